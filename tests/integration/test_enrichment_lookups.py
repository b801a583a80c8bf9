"""Enrichment through the real API lookups (kube_event_watcher/kube/lookups.py) against a
loopback double."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.config.enrichment import EnrichmentConfig
from kube_event_watcher.kube.http import KubeHttp
from kube_event_watcher.kube.lookups import enrichment_lookups
from kube_event_watcher.pipeline.enrich import Enricher
from kube_event_watcher.pipeline.model import Alert
from tests.factories import make_alert
from tests.fixtures import all_objects, load_object
from tests.integration.fake_objects_api import FakeObjectsApi, crashloop_cluster


def pod_alert(name: str, namespace: str = "shop", n: int = 0) -> Alert:
    return make_alert(
        "Pod",
        name,
        namespace,
        field_path="spec.containers{app}",
        cluster="fake",
        notification_id=f"n{n}",
    )


class Rig:
    def __init__(self, api: FakeObjectsApi, config: dict[str, Any]) -> None:
        self.api = api
        self.clock = FakeClock()
        self.config = EnrichmentConfig.model_validate(config)
        self.http = KubeHttp(api.endpoint())
        self.lookups = enrichment_lookups(self.http, self.config, self.clock)
        self.enricher = Enricher({"fake": self.lookups}, self.config, self.clock)

    async def close(self) -> None:
        await self.enricher.close()
        await self.http.close()


@pytest.fixture
async def api() -> AsyncIterator[FakeObjectsApi]:
    server = await FakeObjectsApi(all_objects()).start()
    yield server
    await server.close()


RigFactory = Callable[..., Rig]


@pytest.fixture
async def make_rig(api: FakeObjectsApi) -> AsyncIterator[RigFactory]:
    made: list[Rig] = []

    def make(config: dict[str, Any] | None = None) -> Rig:
        made.append(Rig(api, config or {}))
        return made[-1]

    yield make
    for one in made:
        await one.close()


async def test_a_storm_of_1000_alerts_for_20_pods_costs_20_pod_gets_per_ttl() -> None:
    template = {
        "Pod": load_object("pod-crashloop"),
        "ReplicaSet": load_object("replicaset-web"),
        "Deployment": load_object("deployment-web"),
        "Node": load_object("node-ready"),
    }
    api = await FakeObjectsApi(crashloop_cluster(pods=20, nodes=3, template=template)).start()
    rig = Rig(api, {})
    try:
        names = [f"web-7d9f8c6b5-{i % 20:05d}" for i in range(1000)]
        for round_ in range(2):
            out = []
            for start in range(0, 1000, 100):  # alerts arrive in bursts, as group flushes
                batch = [pod_alert(n, n=i) for i, n in enumerate(names[start : start + 100])]
                out += await rig.enricher.enrich_all(batch)
            assert all(a.facts["enrichment"] == "complete" for a in out)
            assert {a.facts["workload"] for a in out} == {"Deployment/web"}
            assert api.requests["pods"] == 20 * (round_ + 1)
            rig.clock.advance(61)  # the Pod TTL is 60 s
        pods = rig.enricher.pods.stats()
        assert pods.hit_ratio >= 0.95
        # Owners (TTL 5 m) and Nodes (TTL 2 m) outlive the Pod TTL: one GET each.
        assert api.requests["replicasets"] == 1
        assert api.requests["nodes"] == 3
        assert "deployments" not in api.requests
        assert sum(api.requests.values()) / 2000 < 0.03
    finally:
        await rig.close()
        await api.close()


async def test_crash_loop_alert_has_owner_node_and_exit_code(make_rig: RigFactory) -> None:
    rig = make_rig()
    out = await rig.enricher.enrich(pod_alert("web-7d9f8c6b5-x2x9k"))
    assert out.facts["enrichment"] == "complete"
    assert out.facts["workload"] == "Deployment/web"
    assert out.facts["exit_code"] == 1
    assert out.facts["node_ready"] == "True"


async def test_job_pod_walks_up_to_its_cron_job(make_rig: RigFactory, api: FakeObjectsApi) -> None:
    rig = make_rig()
    out = await rig.enricher.enrich(pod_alert("nightly-report-28765432-abcde", "batch-jobs"))
    assert out.facts["workload"] == "CronJob/nightly-report"
    assert api.requests["jobs"] == 1


async def test_log_tail_through_the_api_is_redacted_and_asked_for_the_right_container(
    make_rig: RigFactory, api: FakeObjectsApi
) -> None:
    rig = make_rig({"log_tail": {"enabled": True, "lines": 3, "max_bytes": 1024}})
    api.logs[("shop", "web-7d9f8c6b5-x2x9k", "app")] = (
        "boot\nconfig loaded\nAKIAIOSFODNN7EXAMPLE used\npassword=hunter22\npanic: boom\n"
    )
    out = await rig.enricher.enrich(pod_alert("web-7d9f8c6b5-x2x9k"))
    assert out.facts["log_tail"] == "**** used\npassword=****\npanic: boom\n"
    params = api.log_params[-1]
    assert params["previous"] == "true"
    assert params["container"] == "app"
    assert params["tailLines"] == "3"
    assert int(params["limitBytes"]) >= 1024


async def test_no_previous_container_log_is_not_a_failure(
    make_rig: RigFactory, api: FakeObjectsApi
) -> None:
    rig = make_rig({"log_tail": {"enabled": True}})
    out = await rig.enricher.enrich(pod_alert("web-7d9f8c6b5-x2x9k"))
    assert api.requests["pods/log"] == 1  # answered 400 "previous terminated container not found"
    assert "log_tail" not in out.facts
    assert out.facts["enrichment"] == "complete"


async def test_not_found_is_negatively_cached(make_rig: RigFactory, api: FakeObjectsApi) -> None:
    rig = make_rig()
    for _ in range(3):
        out = await rig.enricher.enrich(pod_alert("deleted-pod"))
        assert out.facts["enrichment"] == "partial: Pod shop/deleted-pod not found (deleted?)"
    assert api.requests["pods"] == 1
    rig.clock.advance(11)  # negative_ttl 10 s
    await rig.enricher.enrich(pod_alert("deleted-pod"))
    assert api.requests["pods"] == 2


async def test_forbidden_is_reported_once_with_the_rule_and_not_asked_again(
    make_rig: RigFactory, api: FakeObjectsApi
) -> None:
    rig = make_rig()
    api.forbidden.add("nodes")
    with capture_logs() as logs:
        first = await rig.enricher.enrich(pod_alert("web-7d9f8c6b5-x2x9k"))
        rig.clock.advance(130)  # past the Node TTL: it would be looked up again
        second = await rig.enricher.enrich(pod_alert("web-7d9f8c6b5-x2x9k"))
    for out in (first, second):
        assert (
            out.facts["enrichment"] == "partial: Node worker-1: forbidden: get nodes (cluster-wide)"
        )
        assert out.facts["workload"] == "Deployment/web"
    assert api.requests["nodes"] == 1
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert '{apiGroups: [""], resources: [nodes], verbs: [get]}' in warnings[0]["fix"]
    assert "fake-token" not in str(warnings)


async def test_a_slow_lookup_times_out_and_the_alert_goes_out(
    make_rig: RigFactory, api: FakeObjectsApi
) -> None:
    rig = make_rig({"api_budget": {"lookup_timeout": "200ms", "deadline": "1s"}})
    api.hang.add("nodes")
    out = await rig.enricher.enrich(pod_alert("web-7d9f8c6b5-x2x9k"))
    assert out.facts["enrichment"] == "partial: Node worker-1: get nodes: no answer within 0.2s"
    assert out.facts["exit_code"] == 1
