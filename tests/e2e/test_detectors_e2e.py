"""The Pod and Node state detectors against the real kube-apiserver: the daemon lists and
watches real Pods and Nodes (the real wire format, bookmarks and all), and what their
statuses show becomes one alert each.

There is no kubelet here: statuses are written through the `/status` subresource the way a
kubelet would (tests/e2e/test_enrichment_e2e.py's builders), and a Pod bound to a node with
a finalizer stays Terminating after its delete, as with a kubelet that is gone.
"""

from __future__ import annotations

import uuid

from kube_event_watcher.daemon import Daemon
from kube_event_watcher.pipeline.model import Alert
from kube_event_watcher.state.memory import MemoryStore
from tests.e2e.controlplane.cluster import ControlPlane
from tests.e2e.test_enrichment_e2e import crash_looping_workload, not_ready_node
from tests.notifiers_support import until
from tests.support.daemon import running_daemon
from tests.support.recording import RecordingNotifier

CONFIG = {
    "detectors": {
        "enabled": True,
        "check_interval": "100ms",
        "terminating_after": "1s",
        "node_condition_after": "0s",
    }
}


def about(alerts: list[Alert], *names: str) -> list[tuple[str, str]]:
    """(reason, object) of the detector alerts about the objects this test made."""
    return sorted(
        (a.reason, a.regarding.name)
        for a in alerts
        if a.regarding.name in names
        and a.occurrences[0].reporting_controller == "kube-event-watcher/detector"
    )


async def test_real_pods_and_nodes_become_one_alert_per_finding(
    control_plane: ControlPlane,
) -> None:
    plane, recorder = control_plane, RecordingNotifier()
    ns = f"e2e-detect-{uuid.uuid4().hex[:8]}"
    node = f"worker-{uuid.uuid4().hex[:8]}"
    plane.create_namespace(ns)
    async with running_daemon(plane.kubeconfig, MemoryStore(), recorder, CONFIG) as daemon:
        await until(
            lambda: all(r.listed.is_set() for r in daemon.object_runners),
            "the Pods and Nodes listed",
            timeout=30,
        )
        not_ready_node(plane, node)
        pod = crash_looping_workload(plane, ns, node)["metadata"]["name"]
        stuck = plane.create_object(
            f"/api/v1/namespaces/{ns}/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "stuck-0", "finalizers": ["example.com/hold"]},
                "spec": {
                    "nodeName": node,
                    "containers": [{"name": "app", "image": "registry.example.com/app:1"}],
                },
            },
        )["metadata"]["name"]
        plane.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{stuck}?gracePeriodSeconds=1")
        expected = [
            ("CrashLoopBackOff", pod),
            ("NodeMemoryPressure", node),
            ("NodeNotReady", node),
            ("OOMKilled", pod),
            ("PodStuckTerminating", stuck),
        ]
        await until(
            lambda: about(recorder.alerts, pod, node, stuck) == expected,
            f"{expected}, got {about(recorder.alerts, pod, node, stuck)}",
            timeout=30,
        )
        # A change that is not a new finding (a label): nothing new.
        plane.patch(
            f"/api/v1/namespaces/{ns}/pods/{pod}", {"metadata": {"labels": {"touched": "yes"}}}
        )
        await plane_settles(daemon, plane, ns)
        found = about(recorder.alerts, pod, node, stuck)
    plane.patch(f"/api/v1/namespaces/{ns}/pods/{stuck}", {"metadata": {"finalizers": None}})
    for name in (pod, stuck):
        plane.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}?gracePeriodSeconds=0")
    plane.delete(f"/api/v1/nodes/{node}")
    assert found == expected
    crash = next(a for a in recorder.alerts if a.reason == "CrashLoopBackOff")
    assert crash.regarding.namespace == ns
    assert "restarted 5 times, last exit code 137 (OOMKilled)" in crash.note


async def plane_settles(daemon: Daemon, plane: ControlPlane, ns: str) -> None:
    """Wait until the Pods watch has seen a change made after everything else (a marker
    Pod's ADDED reached the cache): whatever the earlier changes made is in by then."""
    marker = plane.create_object(
        f"/api/v1/namespaces/{ns}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "marker-0"},
            "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1"}]},
        },
    )
    objects = daemon.objects["default"]
    await until(
        lambda: objects.cached_pod(ns, marker["metadata"]["name"]) is not None,
        "the marker Pod cached",
        timeout=30,
    )
    plane.request("DELETE", f"/api/v1/namespaces/{ns}/pods/marker-0?gracePeriodSeconds=0")
