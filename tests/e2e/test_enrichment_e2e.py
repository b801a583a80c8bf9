"""Enrichment through the real lookups against the real kube-apiserver.

A Deployment, a ReplicaSet it controls, a Pod the ReplicaSet controls (each ownerReference
with the owner's real uid) and a Node are created as plain objects; their statuses are
patched through the `/status` subresource the way the kubelet would write them: the Pod
crash-looping after an OOM kill (exit code 137), the Node NotReady under memory pressure.
A real Event about the Pod is read back, normalized and turned into an Alert, and the
Enricher with `enrichment_lookups` fills in the facts.

Not here: the previous container's log tail (`pods/log`) is served by the kubelet, and this
control plane has none; it is tested against the API double in
tests/integration/test_enrichment_lookups.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from kube_event_watcher.clock import SystemClock
from kube_event_watcher.config.enrichment import EnrichmentConfig
from kube_event_watcher.config.routing import RouteConfig
from kube_event_watcher.config.schema import ClusterConfig
from kube_event_watcher.kube.client import resolve_endpoint
from kube_event_watcher.kube.http import KubeHttp
from kube_event_watcher.kube.lookups import enrichment_lookups
from kube_event_watcher.kube.wire import convert_event
from kube_event_watcher.pipeline.enrich import Enricher
from kube_event_watcher.pipeline.ledger import SeenLedger
from kube_event_watcher.pipeline.model import Alert
from kube_event_watcher.pipeline.normalize import Normalizer
from kube_event_watcher.pipeline.route import Router
from tests.e2e.controlplane.cluster import ControlPlane, rfc3339_micro
from tests.factories import make_alert

CLUSTER = "e2e"
LABELS = {"app": "web"}


def seconds_now() -> str:
    """Now as a metav1.Time (second precision), as status timestamps are written."""
    return rfc3339_micro()[:19] + "Z"


def owner(obj: dict[str, Any]) -> dict[str, Any]:
    """A controller ownerReference to `obj`, with its real uid."""
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def pod_template() -> dict[str, Any]:
    return {
        "metadata": {"labels": LABELS},
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1.4.2"}]},
    }


def crash_looping_workload(plane: ControlPlane, ns: str, node_name: str) -> dict[str, Any]:
    """Deployment → ReplicaSet → Pod on `node_name`, the Pod OOM-killed and backing off."""
    deployment = plane.create_object(
        f"/apis/apps/v1/namespaces/{ns}/deployments",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": LABELS}, "template": pod_template()},
        },
    )
    replicaset = plane.create_object(
        f"/apis/apps/v1/namespaces/{ns}/replicasets",
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "web-7d9f8c6b5", "ownerReferences": [owner(deployment)]},
            "spec": {"selector": {"matchLabels": LABELS}, "template": pod_template()},
        },
    )
    template = pod_template()
    pod = plane.create_object(
        f"/api/v1/namespaces/{ns}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web-7d9f8c6b5-x2x9k",
                "labels": LABELS,
                "ownerReferences": [owner(replicaset)],
            },
            # Bound at creation: there is no scheduler to do it.
            "spec": {**template["spec"], "nodeName": node_name},
        },
    )
    now = seconds_now()
    patched: dict[str, Any] = plane.patch_status(
        f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}",
        {
            "status": {
                "phase": "Running",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "ContainersNotReady",
                        "lastTransitionTime": now,
                    }
                ],
                "containerStatuses": [
                    {
                        "name": "app",
                        "ready": False,
                        "restartCount": 5,
                        "image": "registry.example.com/app:1.4.2",
                        "imageID": "registry.example.com/app@sha256:aa",
                        "state": {
                            "waiting": {
                                "reason": "CrashLoopBackOff",
                                "message": "back-off 2m40s restarting failed container=app",
                            }
                        },
                        "lastState": {
                            "terminated": {
                                "exitCode": 137,
                                "reason": "OOMKilled",
                                "startedAt": now,
                                "finishedAt": now,
                            }
                        },
                    }
                ],
            }
        },
    )
    return patched


def not_ready_node(plane: ControlPlane, name: str) -> None:
    plane.create_object(
        "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
    )
    now = seconds_now()

    def condition(kind: str, status: str, reason: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    plane.patch_status(
        f"/api/v1/nodes/{name}",
        {
            "status": {
                "conditions": [
                    condition("Ready", "False", "KubeletNotReady"),
                    condition("MemoryPressure", "True", "KubeletHasInsufficientMemory"),
                    condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                    condition("PIDPressure", "False", "KubeletHasSufficientPID"),
                ]
            }
        },
    )


def alert_from_real_event(plane: ControlPlane, pod: dict[str, Any]) -> Alert:
    """The BackOff event a kubelet would record, created and read back through the API, then
    normalized the way the watch does."""
    meta = pod["metadata"]
    event = plane.create_event(
        meta["namespace"],
        f"{meta['name']}.{uuid.uuid4().hex[:8]}",
        {
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "apiVersion": "v1",
            "fieldPath": "spec.containers{app}",
        },
        "BackOff",
        "Back-off restarting failed container app",
        reporting_controller="kubelet",
    )
    occurrence = Normalizer(CLUSTER, SeenLedger()).apply("ADDED", convert_event(event))
    assert occurrence is not None
    return Alert.from_occurrence(occurrence)


@pytest.fixture
async def control_plane_http(control_plane: ControlPlane) -> AsyncIterator[KubeHttp]:
    endpoint = await resolve_endpoint(
        ClusterConfig(name=CLUSTER), str(control_plane.kubeconfig), None, env={}
    )
    http = KubeHttp(endpoint)
    try:
        yield http
    finally:
        await http.close()


@pytest.fixture
async def enricher(control_plane_http: KubeHttp) -> AsyncIterator[Enricher]:
    config = EnrichmentConfig()
    clock = SystemClock()
    lookups = enrichment_lookups(control_plane_http, config, clock)
    enricher = Enricher({CLUSTER: lookups}, config, clock)
    try:
        yield enricher
    finally:
        await enricher.close()


async def test_a_crash_looping_oom_killed_pod_on_a_not_ready_node(
    control_plane: ControlPlane, enricher: Enricher
) -> None:
    ns = f"e2e-enrich-{uuid.uuid4().hex[:8]}"
    control_plane.create_namespace(ns)
    node_name = f"worker-{uuid.uuid4().hex[:8]}"
    not_ready_node(control_plane, node_name)
    pod = crash_looping_workload(control_plane, ns, node_name)

    enriched = await enricher.enrich(alert_from_real_event(control_plane, pod))
    facts = enriched.facts
    assert facts["enrichment"] == "complete"
    assert facts["workload"] == "Deployment/web"
    assert (facts["owner_kind"], facts["owner_name"]) == ("Deployment", "web")
    assert facts["owner_chain"] == ["ReplicaSet/web-7d9f8c6b5", "Deployment/web"]
    assert facts["container"] == "app"
    assert facts["container_state"] == "waiting"
    assert facts["waiting_reason"] == "CrashLoopBackOff"
    assert facts["last_terminated_reason"] == "OOMKilled"
    assert facts["exit_code"] == 137
    assert facts["restart_count"] == 5
    assert facts["pod_phase"] == "Running"
    assert facts["pod_qos"] == "BestEffort"  # set by the apiserver: no requests or limits
    assert "Ready=False (ContainersNotReady)" in facts["pod_conditions"]
    assert facts["node"] == node_name
    assert facts["node_ready"] == "False"
    assert facts["node_ready_reason"] == "KubeletNotReady"
    assert set(facts["node_conditions"]) == {"NotReady", "MemoryPressure"}
    assert "log_tail" not in facts  # off by default; needs a kubelet anyway


def crd(
    group: str, kind: str, plural: str, version: str, scope: str = "Namespaced"
) -> dict[str, Any]:
    """A CustomResourceDefinition of that shape (no controller behind it), any fields kept."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "scope": scope,
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


ROLLOUT_CRD = crd("argoproj.io", "Rollout", "rollouts", "v1alpha1")
APPLICATION_CRD = crd("platform.example.com", "Application", "applications", "v1")


def serve_crd(plane: ControlPlane, definition: dict[str, Any]) -> None:
    """Create the CRD (once per control plane) and wait until its group/version is served."""
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    name = definition["metadata"]["name"]
    if plane.request("GET", f"{path}/{name}").status == 404:
        plane.create_object(path, definition)
    spec = definition["spec"]
    discovery = f"/apis/{spec['group']}/{spec['versions'][0]['name']}"
    for _ in range(400):  # established within a second or two; polled, no fixed sleep
        if plane.request("GET", discovery).status == 200:
            return
        time.sleep(0.025)
    raise AssertionError(f"the CRD {name} was never served")


def rollout_pod(plane: ControlPlane, ns: str, rollout: dict[str, Any]) -> dict[str, Any]:
    """A ReplicaSet controlled by `rollout` and a Pod controlled by that ReplicaSet."""
    name = rollout["metadata"]["name"]
    replicaset = plane.create_object(
        f"/apis/apps/v1/namespaces/{ns}/replicasets",
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": f"{name}-6c9f7d8b4", "ownerReferences": [owner(rollout)]},
            "spec": {"selector": {"matchLabels": LABELS}, "template": pod_template()},
        },
    )
    return plane.create_object(
        f"/api/v1/namespaces/{ns}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-6c9f7d8b4-q7w2x",
                "labels": LABELS,
                "ownerReferences": [owner(replicaset)],
            },
            "spec": pod_template()["spec"],
        },
    )


async def enriched_facts(
    plane: ControlPlane, http: KubeHttp, config: EnrichmentConfig, pod: dict[str, Any]
) -> dict[str, Any]:
    clock = SystemClock()
    stage = Enricher({CLUSTER: enrichment_lookups(http, config, clock)}, config, clock)
    try:
        return dict((await stage.enrich(alert_from_real_event(plane, pod))).facts)
    finally:
        await stage.close()


async def test_a_pod_of_an_argo_rollout_in_a_team_namespace(
    control_plane: ControlPlane, control_plane_http: KubeHttp
) -> None:
    """An owner chain through a custom resource (Rollout → ReplicaSet → Pod) names the
    Rollout as the workload, and the Namespace's labels are a fact routes match on."""
    ns = f"e2e-rollout-{uuid.uuid4().hex[:8]}"
    control_plane.create_namespace(ns, labels={"team": "payments"})
    serve_crd(control_plane, ROLLOUT_CRD)
    rollout = control_plane.create_object(
        f"/apis/argoproj.io/v1alpha1/namespaces/{ns}/rollouts",
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "checkout"}},
    )
    pod = rollout_pod(control_plane, ns, rollout)
    config = EnrichmentConfig(namespace_labels=True)
    facts = await enriched_facts(control_plane, control_plane_http, config, pod)
    assert facts["enrichment"] == "complete", facts
    assert facts["owner_chain"] == ["ReplicaSet/checkout-6c9f7d8b4", "Rollout/checkout"]
    assert facts["workload"] == "Rollout/checkout"
    assert facts["namespace_labels"]["team"] == "payments"
    routes = Router(
        RouteConfig.model_validate(
            {
                "receiver": "oncall",
                "routes": [
                    {"matchers": ['facts.namespace_labels.team="payments"'], "receiver": "payments"}
                ],
            }
        ),
        ["oncall", "payments"],
    )
    assert routes.receivers(replace(make_alert(), facts=facts)) == ("payments",)


async def test_owner_groups_follow_a_rollout_up_to_the_application_that_owns_it(
    control_plane: ControlPlane, control_plane_http: KubeHttp
) -> None:
    """With `owner_groups`, the chain fetches the custom resources (their plurals found by
    the real API discovery) and goes on above the Rollout to what the team owns."""
    ns = f"e2e-owners-{uuid.uuid4().hex[:8]}"
    control_plane.create_namespace(ns)
    serve_crd(control_plane, ROLLOUT_CRD)
    serve_crd(control_plane, APPLICATION_CRD)
    application = control_plane.create_object(
        f"/apis/platform.example.com/v1/namespaces/{ns}/applications",
        {
            "apiVersion": "platform.example.com/v1",
            "kind": "Application",
            "metadata": {"name": "storefront"},
        },
    )
    rollout = control_plane.create_object(
        f"/apis/argoproj.io/v1alpha1/namespaces/{ns}/rollouts",
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "checkout", "ownerReferences": [owner(application)]},
        },
    )
    pod = rollout_pod(control_plane, ns, rollout)
    config = EnrichmentConfig(owner_groups=["argoproj.io", "platform.example.com"])
    facts = await enriched_facts(control_plane, control_plane_http, config, pod)
    assert facts["enrichment"] == "complete", facts
    assert facts["owner_chain"] == [
        "ReplicaSet/checkout-6c9f7d8b4",
        "Rollout/checkout",
        "Application/storefront",
    ]
    assert facts["workload"] == "Application/storefront"
