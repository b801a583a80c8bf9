"""The incident scenarios on a real cluster: real controllers, real scheduler, kwok kubelets.

Every scenario of ``controlplane/workloads.py`` is applied at once (each in its own
namespace) when the module starts, so they progress side by side; each test then polls,
with a deadline, for what a user would see: the Pod or Node status (``kubectl get``) and the
Events (``kubectl events``) with the controller that reported them and how their count grows.
The last test runs the daemon on it: one enriched firing notification per incident group.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from kube_event_watcher.state.memory import MemoryStore
from tests.support.daemon import running_daemon
from tests.support.recording import RecordingNotifier

from .controlplane.cluster import ApiError
from .controlplane.localcluster import LocalCluster, node_condition, pod_container_status
from .controlplane.workloads import DOOMED_NODE, FAULTY_NODE, STUCK_FINALIZER, apply, scenarios

JSON = dict[str, Any]
T = TypeVar("T")
DEADLINE = 45.0  # seconds for any one condition; they hold within a few on 2 cores


@pytest.fixture(scope="module")
def cluster(local_cluster: LocalCluster) -> LocalCluster:
    """The local cluster with every scenario applied."""
    for scenario in scenarios().values():
        apply(local_cluster, scenario)
    return local_cluster


def poll(cluster: LocalCluster, what: str, probe: Callable[[], T | None]) -> T:
    return cluster.wait_for(what, probe, DEADLINE)


def events(cluster: LocalCluster, namespace: str) -> list[JSON]:
    path = f"/apis/events.k8s.io/v1/namespaces/{namespace}/events"
    items: list[JSON] = cluster.plane.get(path)["items"]
    return items


def occurrences(event: JSON) -> int:
    """How often the Event happened: ``series.count`` (events.k8s.io recorders) or
    ``deprecatedCount`` (legacy core/v1 recorders: the kubelet's, kwok's, the controllers')."""
    series = event.get("series") or {}
    return int(series.get("count") or event.get("deprecatedCount") or 1)


def find_event(
    cluster: LocalCluster,
    namespace: str,
    reason: str,
    *,
    kind: str = "Pod",
    name: str | None = None,
    note: str | None = None,
    count: int = 1,
) -> Callable[[], JSON | None]:
    """A probe: the Event `reason` about a `kind` (named `name`, note containing `note`)
    that happened `count` times or more."""

    def probe() -> JSON | None:
        for event in events(cluster, namespace):
            regarding = event["regarding"]
            if event.get("reason") != reason or regarding.get("kind") != kind:
                continue
            if name is not None and regarding.get("name") != name:
                continue
            if note is not None and note not in (event.get("note") or ""):
                continue
            if occurrences(event) >= count:
                return event
        return None

    return probe


def only_pod(cluster: LocalCluster, namespace: str) -> JSON | None:
    items: list[JSON] = cluster.plane.get(f"/api/v1/namespaces/{namespace}/pods")["items"]
    return items[0] if len(items) == 1 else None


def container(
    cluster: LocalCluster, namespace: str, accept: Callable[[JSON], bool]
) -> Callable[[], JSON | None]:
    """A probe: the namespace's one Pod's ``app`` container status, once `accept` takes it."""

    def probe() -> JSON | None:
        pod = only_pod(cluster, namespace)
        status = pod_container_status(pod) if pod else None
        return status if status is not None and accept(status) else None

    return probe


def waiting_reason(status: JSON) -> str | None:
    reason: str | None = (status.get("state") or {}).get("waiting", {}).get("reason")
    return reason


def condition(obj: JSON, kind: str) -> JSON:
    found: JSON = next(c for c in obj["status"]["conditions"] if c["type"] == kind)
    return found


def node_taints(node: JSON) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in node["spec"].get("taints") or []}


def pod_phase(cluster: LocalCluster, path: str, phase: str) -> Callable[[], JSON | None]:
    def probe() -> JSON | None:
        pod: JSON = cluster.plane.get(path)
        return pod if pod["status"].get("phase") == phase else None

    return probe


def test_crashloop_deployment(cluster: LocalCluster) -> None:
    ns = "kew-crashloop"
    poll(
        cluster,
        "CrashLoopBackOff",
        container(cluster, ns, lambda s: waiting_reason(s) == "CrashLoopBackOff"),
    )
    status = poll(
        cluster, "restartCount > 1", container(cluster, ns, lambda s: s["restartCount"] > 1)
    )
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert status["lastState"]["terminated"]["exitCode"] == 1

    # One Event object per Pod, its count growing (legacy recorder: deprecatedCount).
    backoff = poll(cluster, "BackOff x3", find_event(cluster, ns, "BackOff", count=3))
    assert backoff["type"] == "Warning"
    assert backoff["note"] == "Back-off restarting failed container app"
    assert backoff["reportingController"] == "kwok_controller"
    assert backoff["deprecatedCount"] >= 3 and "series" not in backoff
    # The rollout that led there, as recorded by the real controllers and scheduler.
    scaled = poll(
        cluster,
        "ScalingReplicaSet",
        find_event(cluster, ns, "ScalingReplicaSet", kind="Deployment"),
    )
    assert scaled["reportingController"] == "deployment-controller"
    created = poll(
        cluster, "SuccessfulCreate", find_event(cluster, ns, "SuccessfulCreate", kind="ReplicaSet")
    )
    assert created["reportingController"] == "replicaset-controller"
    scheduled = poll(cluster, "Scheduled", find_event(cluster, ns, "Scheduled"))
    assert scheduled["reportingController"] == "default-scheduler"
    assert scheduled["action"] == "Binding"


def test_oomkilled_deployment(cluster: LocalCluster) -> None:
    ns = "kew-oomkilled"
    status = poll(
        cluster, "restartCount > 1", container(cluster, ns, lambda s: s["restartCount"] > 1)
    )
    assert status["lastState"]["terminated"]["reason"] == "OOMKilled"
    assert status["lastState"]["terminated"]["exitCode"] == 137
    poll(
        cluster,
        "CrashLoopBackOff",
        container(cluster, ns, lambda s: waiting_reason(s) == "CrashLoopBackOff"),
    )
    assert (
        poll(cluster, "BackOff x2", find_event(cluster, ns, "BackOff", count=2))["type"]
        == "Warning"
    )


def test_image_pull_failure(cluster: LocalCluster) -> None:
    ns = "kew-imagepull"
    for reason in ("ErrImagePull", "ImagePullBackOff"):
        status = poll(
            cluster, reason, container(cluster, ns, lambda s, r=reason: waiting_reason(s) == r)
        )
        assert status["restartCount"] == 0
    pod = only_pod(cluster, ns)
    assert pod is not None and pod["status"]["phase"] == "Pending"
    for note in ("Error: ErrImagePull", "Error: ImagePullBackOff"):
        assert (
            poll(cluster, note, find_event(cluster, ns, "Failed", note=note))["type"] == "Warning"
        )
    backoff = poll(
        cluster, "BackOff (pull)", find_event(cluster, ns, "BackOff", note="pulling image")
    )
    assert backoff["type"] == "Normal"
    # The pull is retried: the same Events again, counted.
    poll(
        cluster,
        "ErrImagePull x2",
        find_event(cluster, ns, "Failed", note="Error: ErrImagePull", count=2),
    )


def test_pod_stuck_terminating(cluster: LocalCluster) -> None:
    ns, path = "kew-stuck", "/api/v1/namespaces/kew-stuck/pods/stuck"
    plane = cluster.plane
    poll(cluster, "stuck Pod Running", pod_phase(cluster, path, "Running"))
    plane.delete(path)
    # kwok, as the kubelet, stops the container and confirms the deletion; the finalizer stays.
    pod = poll(cluster, "containers stopped", pod_phase(cluster, path, "Succeeded"))
    assert pod["metadata"]["deletionTimestamp"]
    assert pod["metadata"]["deletionGracePeriodSeconds"] == 0
    assert pod["metadata"]["finalizers"] == [STUCK_FINALIZER]
    status = pod_container_status(pod)
    assert status is not None and status["state"]["terminated"]["reason"] == "Completed"
    assert poll(cluster, "Killing", find_event(cluster, ns, "Killing"))["type"] == "Normal"
    # Still there a while later: Terminating is a state, not a moment.
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        assert plane.get(path)["metadata"]["deletionTimestamp"]
        time.sleep(0.5)
    plane.patch(path, {"metadata": {"finalizers": None}})

    def gone() -> bool | None:
        try:
            plane.get(path)
        except ApiError as exc:
            return exc.status == 404 or None
        return None

    poll(cluster, "stuck Pod gone", gone)


def test_unschedulable_pod(cluster: LocalCluster) -> None:
    ns = "kew-unschedulable"
    failed = poll(cluster, "FailedScheduling", find_event(cluster, ns, "FailedScheduling"))
    assert failed["type"] == "Warning"
    assert failed["reportingController"] == "default-scheduler"
    assert failed["action"] == "Scheduling"
    assert "Insufficient cpu" in failed["note"]
    pod = only_pod(cluster, ns)
    assert pod is not None and pod["status"]["phase"] == "Pending"
    scheduled = condition(pod, "PodScheduled")
    assert scheduled["status"] == "False"
    assert scheduled["reason"] == "Unschedulable"


def test_node_not_ready(cluster: LocalCluster) -> None:
    """The kubelet is alive and says NotReady: the controller taints the Node; the Event is
    the kubelet's own (the node-lifecycle controller records none for this)."""
    plane = cluster.plane

    def not_ready() -> JSON | None:
        node: JSON = plane.get(f"/api/v1/nodes/{FAULTY_NODE}")
        if node_condition(node, "Ready") != "False":
            return None
        return node if ("node.kubernetes.io/not-ready", "NoExecute") in node_taints(node) else None

    node = poll(cluster, "Node NotReady and tainted", not_ready)
    assert condition(node, "Ready")["reason"] == "KubeletNotReady"
    assert ("node.kubernetes.io/not-ready", "NoSchedule") in node_taints(node)
    event = poll(
        cluster,
        "NodeNotReady",
        find_event(cluster, "default", "NodeNotReady", kind="Node", name=FAULTY_NODE),
    )
    assert event["reportingController"] == "kwok_controller"
    assert event["type"] == "Normal"


DOOMED_POD = "/api/v1/namespaces/kew-node-unreachable/pods/on-doomed-node"


def kill_doomed_kubelet(cluster: LocalCluster) -> None:
    """Once its Pod runs (the controller reports only a Node it saw Ready), kill the doomed
    Node's kubelet; a no-op when that is done already."""
    if cluster.doomed_kubelet_running:
        poll(cluster, "Pod Running on the doomed Node", pod_phase(cluster, DOOMED_POD, "Running"))
        cluster.stop_doomed_kubelet()


def test_node_unreachable(cluster: LocalCluster) -> None:
    """The kubelet dies: the node-lifecycle controller marks the Node Unknown, taints it
    unreachable, marks its Pods not ready, and records Events for both."""
    plane = cluster.plane
    kill_doomed_kubelet(cluster)

    def unreachable() -> JSON | None:
        node: JSON = plane.get(f"/api/v1/nodes/{DOOMED_NODE}")
        if node_condition(node, "Ready") != "Unknown":
            return None
        # Two controller passes add the taints (NoExecute, and NoSchedule in the
        # no-schedule tainting pass), each on its own schedule: wait for both.
        wanted = {("node.kubernetes.io/unreachable", e) for e in ("NoExecute", "NoSchedule")}
        return node if wanted <= node_taints(node) else None

    node = poll(
        cluster, "Node Unknown and tainted unreachable (NoExecute, NoSchedule)", unreachable
    )
    assert condition(node, "Ready")["reason"] == "NodeStatusUnknown"
    event = poll(
        cluster,
        "NodeNotReady (Node)",
        find_event(cluster, "default", "NodeNotReady", kind="Node", name=DOOMED_NODE),
    )
    assert event["reportingController"] == "node-controller"
    pod_event = poll(
        cluster, "NodeNotReady (Pod)", find_event(cluster, "kew-node-unreachable", "NodeNotReady")
    )
    assert pod_event["type"] == "Warning"
    assert pod_event["reportingController"] == "node-controller"
    assert condition(plane.get(DOOMED_POD), "Ready")["status"] == "False"


async def test_the_daemon_sends_one_enriched_alert_per_incident(cluster: LocalCluster) -> None:
    """The daemon on the real controllers' Events: one firing notification per incident
    group, enriched from the real Pod, owner chain and Node."""
    kill_doomed_kubelet(cluster)  # done already when test_node_unreachable ran first
    recorder = RecordingNotifier()
    config: JSON = {
        "sources": [{"field_selector": "type=Warning", "startup_max_age": "10m"}],
        "aggregation": {"group": {"wait": "2s", "interval": "10m", "resolve_after": "10m"}},
        "enrichment": {"enabled": True},
    }
    expected = {
        "default/kew-crashloop/crashloop": {"exit_code": 1, "last_terminated_reason": "Error"},
        "default/kew-oomkilled/oomkilled": {
            "exit_code": 137,
            "last_terminated_reason": "OOMKilled",
        },
        "default/kew-imagepull/imagepull": {"workload": "Deployment/imagepull"},
        "default/kew-unschedulable/greedy": {"pod_phase": "Pending", "owner_kind": "Deployment"},
        "default/kew-node-unreachable/on-doomed-node": {"node_ready": "Unknown"},
    }
    async with running_daemon(cluster.kubeconfig, MemoryStore(), recorder, config):
        deadline = asyncio.get_running_loop().time() + DEADLINE
        while {a.group_key for a in recorder.alerts} < expected.keys():
            assert asyncio.get_running_loop().time() < deadline, [
                a.group_key for a in recorder.alerts
            ]
            await recorder.wait_for(len(recorder.alerts) + 1, timeout=DEADLINE)
    by_group: dict[str, list[Any]] = {}
    for alert in recorder.alerts:
        by_group.setdefault(alert.group_key, []).append(alert)
    for group, facts in expected.items():
        [firing] = by_group[group]  # one notification per incident so far: no repeats
        assert firing.status == "firing"
        assert firing.objects == {"Pod": 1}
        assert facts.items() <= dict(firing.facts).items(), (group, dict(firing.facts))
    assert by_group["default/kew-imagepull/imagepull"][0].facts["waiting_reason"] in {
        "ErrImagePull",
        "ImagePullBackOff",
    }
