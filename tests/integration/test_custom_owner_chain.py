"""Owner chains through custom resources (`enrichment.owner_groups`): the kind's resource is
found by API discovery, asked once per group/version, and a chain goes on above it.

Pod → ReplicaSet → Rollout (argoproj.io) → Application (platform.example.com): what a team
owns is the Application, and that is what the alert names and routes match on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.config.enrichment import EnrichmentConfig
from kube_event_watcher.kube.http import KubeHttp
from kube_event_watcher.kube.lookups import DISCOVERY_TTL_SECONDS, enrichment_lookups
from kube_event_watcher.pipeline.enrich import Enricher
from kube_event_watcher.pipeline.model import Alert
from tests.factories import make_alert
from tests.fixtures import load_object
from tests.integration.fake_objects_api import FakeObjectsApi

ROLLOUTS = "argoproj.io/v1alpha1"
APPS = "platform.example.com/v1"
GROUPS = ["argoproj.io", "platform.example.com"]


def controlled_by(obj: dict[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"]["ownerReferences"] = [
        {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
            "controller": True,
        }
    ]
    return obj


def custom(api_version: str, kind: str, name: str, namespace: str = "shop") -> dict[str, Any]:
    meta = {"name": name, "uid": f"uid-{kind}-{name}"}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": meta}


def rollout_workload(name: str, top: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A Pod of ReplicaSet <name>-6c9f7d8b4 of Rollout <name>, the Rollout controlled by `top`."""
    rollout = custom(ROLLOUTS, "Rollout", name)
    if top is not None:
        controlled_by(rollout, top)
    replicaset = controlled_by(load_object("replicaset-web"), rollout)
    replicaset["metadata"].update(name=f"{name}-6c9f7d8b4", uid=f"rs-{name}")
    pod = controlled_by(load_object("pod-crashloop"), replicaset)
    pod["metadata"].update(name=f"{name}-6c9f7d8b4-q7w2x", uid=f"pod-{name}")
    return [rollout, replicaset, pod]


def pod_alert(name: str) -> Alert:
    return make_alert("Pod", f"{name}-6c9f7d8b4-q7w2x", "shop", cluster="fake")


@pytest.fixture
async def api() -> AsyncIterator[FakeObjectsApi]:
    server = FakeObjectsApi([load_object("node-ready")])
    server.serve_custom(ROLLOUTS, "Rollout", "rollouts", namespaced=True)
    server.serve_custom(APPS, "Application", "applications", namespaced=True)
    server.serve_custom(APPS, "Tenant", "tenants", namespaced=False)
    await server.start()
    yield server
    await server.close()


class Rig:
    def __init__(self, api: FakeObjectsApi, config: dict[str, Any]) -> None:
        self.clock = FakeClock()
        self.config = EnrichmentConfig.model_validate(config)
        self.http = KubeHttp(api.endpoint())
        self.lookups = enrichment_lookups(self.http, self.config, self.clock)
        self.enricher = Enricher({"fake": self.lookups}, self.config, self.clock)

    async def enrich(self, alert: Alert) -> dict[str, Any]:
        return dict((await self.enricher.enrich(alert)).facts)

    async def close(self) -> None:
        await self.enricher.close()
        await self.http.close()


@pytest.fixture
async def rig(api: FakeObjectsApi, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    marker = request.node.get_closest_marker("enrichment")
    made = Rig(api, marker.args[0] if marker else {"owner_groups": GROUPS})
    yield made
    await made.close()


async def test_the_chain_goes_through_a_rollout_to_the_application_that_owns_it(
    api: FakeObjectsApi, rig: Rig
) -> None:
    application = custom(APPS, "Application", "checkout")
    for obj in [application, *rollout_workload("checkout", application)]:
        api.add(obj)
    facts = await rig.enrich(pod_alert("checkout"))
    assert facts["enrichment"] == "complete", facts
    assert facts["owner_chain"] == [
        "ReplicaSet/checkout-6c9f7d8b4",
        "Rollout/checkout",
        "Application/checkout",
    ]
    assert facts["workload"] == "Application/checkout"
    assert (api.requests["rollouts"], api.requests["applications"]) == (1, 1)


async def test_discovery_is_asked_once_per_group_version_however_many_owners_ask(
    api: FakeObjectsApi, rig: Rig
) -> None:
    names = [f"svc-{i}" for i in range(8)]
    for name in names:
        for obj in rollout_workload(name, None):
            api.add(obj)
    results = await asyncio.gather(*(rig.enrich(pod_alert(name)) for name in names))
    assert [facts["workload"] for facts in results] == [f"Rollout/{name}" for name in names]
    assert api.requests[f"discovery {ROLLOUTS}"] == 1
    assert api.requests["rollouts"] == 8
    # A CRD upgraded while we run is found again once the discovery answer is old.
    rig.clock.advance(DISCOVERY_TTL_SECONDS + 1)
    await rig.enrich(pod_alert("svc-0"))
    assert api.requests[f"discovery {ROLLOUTS}"] == 2


async def test_a_cluster_scoped_owner_is_fetched_without_a_namespace(
    api: FakeObjectsApi, rig: Rig
) -> None:
    tenant = custom(APPS, "Tenant", "acme", namespace="")
    for obj in [tenant, *rollout_workload("billing", tenant)]:
        api.add(obj)
    facts = await rig.enrich(pod_alert("billing"))
    assert facts["enrichment"] == "complete", facts
    assert facts["workload"] == "Tenant/acme"
    assert api.requests["tenants"] == 1


@pytest.mark.enrichment({})
async def test_without_owner_groups_a_custom_owner_ends_the_chain_with_no_request(
    api: FakeObjectsApi, rig: Rig
) -> None:
    application = custom(APPS, "Application", "checkout")
    for obj in [application, *rollout_workload("checkout", application)]:
        api.add(obj)
    facts = await rig.enrich(pod_alert("checkout"))
    assert facts["enrichment"] == "complete"
    assert facts["owner_chain"] == ["ReplicaSet/checkout-6c9f7d8b4", "Rollout/checkout"]
    assert api.requests[f"discovery {ROLLOUTS}"] == 0
    assert api.requests["rollouts"] == 0


async def test_an_owner_whose_crd_is_gone_is_still_named_and_the_alert_says_why(
    api: FakeObjectsApi, rig: Rig
) -> None:
    gone = custom("argoproj.io/v1beta9", "Rollout", "legacy")
    replicaset = controlled_by(load_object("replicaset-web"), gone)
    replicaset["metadata"].update(name="legacy-6c9f7d8b4", uid="rs-legacy")
    pod = controlled_by(load_object("pod-crashloop"), replicaset)
    pod["metadata"].update(name="legacy-6c9f7d8b4-q7w2x", uid="pod-legacy")
    api.add(replicaset)
    api.add(pod)
    facts = await rig.enrich(pod_alert("legacy"))
    assert facts["workload"] == "Rollout/legacy"  # from the ownerReference
    assert facts["enrichment"] == (
        "partial: Rollout shop/legacy: argoproj.io/v1beta9 serves no kind Rollout (API discovery)"
    )


async def test_a_forbidden_custom_resource_is_reported_once_with_its_rule(
    api: FakeObjectsApi, rig: Rig
) -> None:
    api.forbidden.add("rollouts")
    for obj in rollout_workload("checkout", None):
        api.add(obj)
    with capture_logs() as logs:
        first = await rig.enrich(pod_alert("checkout"))
        rig.clock.advance(400)  # past the owners' TTL
        second = await rig.enrich(pod_alert("checkout"))
    for facts in (first, second):
        assert facts["workload"] == "Rollout/checkout"
        assert "forbidden: get rollouts (namespace shop)" in facts["enrichment"]
    assert api.requests["rollouts"] == 1
    [warning] = [e for e in logs if e["log_level"] == "warning"]
    assert '{apiGroups: ["argoproj.io"], resources: [rollouts], verbs: [get]}' in warning["fix"]
