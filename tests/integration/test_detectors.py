"""Pod and Node state detectors, and enrichment from the watch-backed cache, against the API
double: what a user gets when a Pod crash-loops, is OOM-killed, hangs Terminating, or a Node
goes NotReady; once, across relists and restarts; and what it costs the API server."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.daemon import Daemon
from kube_event_watcher.state.file import FileStore
from kube_event_watcher.state.memory import MemoryStore
from tests.conftest import RunningDouble
from tests.fixtures import load_object
from tests.notifiers_support import until
from tests.support.apidouble import ApiDouble, micro_time
from tests.support.daemon import running_daemon
from tests.support.recording import RecordingNotifier

DETECTORS: dict[str, Any] = {"detectors": {"enabled": True, "check_interval": "50ms"}}
POD = ("shop", "web-7d9f8c6b5-x2x9k")


def healthy_pod() -> dict[str, Any]:
    pod = load_object("pod-crashloop")
    app = pod["status"]["containerStatuses"][0]
    app.update(restartCount=0, ready=True, state={"running": {"startedAt": "2027-01-15T02:00Z"}})
    app["lastState"] = {}
    return pod


def crash_looping(restarts: int) -> dict[str, Any]:
    pod = load_object("pod-crashloop")
    pod["status"]["containerStatuses"][0]["restartCount"] = restarts
    return pod


async def started(api: ApiDouble, daemon: Daemon) -> None:
    """The object watches listed and watching (the cache answers, changes arrive)."""
    await api.wait_watches_of("pods", 1)
    await api.wait_watches_of("nodes", 1)
    await until(lambda: all(r.listed.is_set() for r in daemon.object_runners), "objects listed")


async def marker(api: ApiDouble, recorder: RecordingNotifier) -> int:
    """An event after everything else: once its alert is in, nothing earlier is pending."""
    before = len(recorder.alerts)
    await api.create_event("default", "Marker", "marker-0")
    alerts = await recorder.wait_for(before + 1)
    assert alerts[-1].reason == "Marker", [a.reason for a in alerts[before:]]
    return before


async def test_a_crash_loop_and_an_oom_kill_are_one_alert_each_with_the_facts(
    api_double: RunningDouble,
) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    await api.put_object("pods", healthy_pod())
    await api.put_object("pods", load_object("pod-oomkilled"))  # already OOM-killed: history
    async with running_daemon(api_double.kubeconfig, MemoryStore(), recorder, DETECTORS) as d:
        await started(api, d)
        await api.put_object("pods", crash_looping(1))
        [alert] = await recorder.wait_for(1)
        await api.put_object("pods", crash_looping(1))  # the same status again: nothing new
        oom = load_object("pod-oomkilled")
        oom["status"]["containerStatuses"][0]["restartCount"] = 4  # killed once more
        await api.put_object("pods", oom)
        await recorder.wait_for(2)
        assert await marker(api, recorder) == 2
        metrics = d.metrics.render()[0].decode()
    assert (alert.reason, alert.regarding.describe()) == (
        "CrashLoopBackOff",
        "Pod/shop/web-7d9f8c6b5-x2x9k",
    )
    assert alert.occurrences[0].reporting_controller == "kube-event-watcher/detector"
    assert "container app is crash-looping: restarted 1 times, last exit code 1" in alert.note
    killed = recorder.alerts[1]
    assert (killed.reason, killed.regarding.name, killed.count) == ("OOMKilled", "db-0", 1)
    assert "OOMKilled (exit code 137), restart count 4" in killed.note
    for reason in ("CrashLoopBackOff", "OOMKilled"):
        assert f'kew_detector_findings_total{{cluster="default",reason="{reason}"}} 1.0' in metrics
    assert 'kew_object_cache_objects{cluster="default",scope="pods.default._all.' in metrics


async def test_a_relist_and_a_restart_do_not_repeat_a_finding(
    api_double: RunningDouble, tmp_path: Path
) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    await api.put_object("pods", healthy_pod())
    store = FileStore(tmp_path / "state")
    async with running_daemon(api_double.kubeconfig, store, recorder, DETECTORS) as d:
        await started(api, d)
        await api.put_object("pods", crash_looping(3))
        await recorder.wait_for(1)
        lists = api.stats.lists_of["pods"]
        await api.put_object("nodes", load_object("node-ready"))  # the cluster moves on
        api.compact()  # and the watch's resourceVersion is compacted: 410, relist
        api.cut_watches()
        await until(lambda: api.stats.lists_of["pods"] > lists, "the Pods relisted")
        await until(lambda: all(r.listed.is_set() for r in d.object_runners), "relisted")
        assert await marker(api, recorder) == 1
    restarted = RecordingNotifier()
    async with running_daemon(
        api_double.kubeconfig, FileStore(tmp_path / "state"), restarted, DETECTORS
    ) as d:
        await started(api, d)
        assert await marker(api, restarted) == 0  # the listed crash loop is known
        await api.put_object("pods", crash_looping(4))
        alerts = await restarted.wait_for(2)
    assert [(a.reason, a.count) for a in recorder.alerts] == [
        ("CrashLoopBackOff", 3),
        ("Marker", 1),
    ]
    assert [(a.reason, a.count, a.occurrences[0].total) for a in alerts[1:]] == [
        ("CrashLoopBackOff", 1, 4)
    ]


async def test_a_node_not_ready_for_a_minute_is_one_alert(api_double: RunningDouble) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    clock = FakeClock()
    node = load_object("node-ready")
    await api.put_object("nodes", node)
    async with running_daemon(
        api_double.kubeconfig, MemoryStore(), recorder, DETECTORS, clock=clock
    ) as d:
        await started(api, d)
        sick = copy.deepcopy(node)
        ready = next(c for c in sick["status"]["conditions"] if c["type"] == "Ready")
        ready.update(
            status="Unknown",
            reason="NodeStatusUnknown",
            message="Kubelet stopped posting node status.",
            lastTransitionTime=micro_time(clock.now())[:19] + "Z",
        )
        stored = await api.put_object("nodes", sick)
        objects = d.objects["default"]
        cached = objects.cached_node
        await until(lambda: getattr(cached("worker-1"), "ready", "") == "Unknown", "cached")
        clock.advance(59)
        checks = d.detector_checks
        await until(lambda: d.detector_checks >= checks + 2, "two detector passes")
        assert recorder.alerts == []  # a blip (or a Node joining) is not an incident
        clock.advance(2)
        [alert] = await recorder.wait_for(1)
        await api.put_object("nodes", stored)  # the same status posted again
        assert await marker(api, recorder) == 1
    assert (alert.reason, alert.regarding.describe()) == ("NodeNotReady", "Node/worker-1")
    assert alert.note == (
        "Node worker-1 Ready=Unknown (NodeStatusUnknown): Kubelet stopped posting node status."
    )


async def test_a_pod_stuck_terminating_is_reported_once_its_grace_has_passed(
    api_double: RunningDouble,
) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    clock = FakeClock()
    config = {"detectors": {**DETECTORS["detectors"], "terminating_after": "5m"}}
    async with running_daemon(
        api_double.kubeconfig, MemoryStore(), recorder, config, clock=clock
    ) as d:
        await started(api, d)
        pod = load_object("pod-terminating-stuck")
        grace_ends = clock.now() + 30
        pod["metadata"]["deletionTimestamp"] = micro_time(grace_ends)[:19] + "Z"
        await api.put_object("pods", pod)
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        objects = d.objects["default"]
        await until(lambda: objects.cached_pod(namespace, name) is not None, "the Pod cached")
        clock.advance(30 + 299)
        checks = d.detector_checks
        await until(lambda: d.detector_checks >= checks + 2, "two detector passes")
        assert recorder.alerts == []  # 299 s past the grace: not stuck yet
        clock.advance(2)
        [alert] = await recorder.wait_for(1)
        checks = d.detector_checks
        await until(lambda: d.detector_checks >= checks + 2, "two more passes")
        assert await marker(api, recorder) == 1
    assert (alert.reason, alert.regarding.describe()) == (
        "PodStuckTerminating",
        "Pod/monitoring/node-exporter-q7w2z",
    )
    assert "still there 301s later" in alert.note


async def test_enrichment_from_the_cache_makes_no_get_and_joins_the_kubelet_events(
    api_double: RunningDouble,
) -> None:
    """A crash-looping Pod: the kubelet's BackOff Events and the detector's finding are one
    group notification, enriched from the cache (no GET for the Pod or its Node)."""
    api, recorder = api_double.api, RecordingNotifier()
    await api.put_object("pods", healthy_pod())
    await api.put_object("nodes", load_object("node-ready"))
    config = {
        **DETECTORS,
        "aggregation": {"group": {"wait": "500ms", "interval": "1m"}},
        "enrichment": {"enabled": True},
    }
    async with running_daemon(api_double.kubeconfig, MemoryStore(), recorder, config) as d:
        await started(api, d)
        pod = await api.put_object("pods", crash_looping(2))
        for _ in range(3):
            await api.create_event(
                *POD[:1], "BackOff", POD[1], regarding_uid=pod["metadata"]["uid"]
            )
        [alert] = await recorder.wait_for(1)
        # A Pod the cache does not have (not created through the API): a GET, then 404.
        await api.create_event("shop", "Failed", "ghost-0")
        await recorder.wait_for(2)
        gets = dict(api.stats.gets_of)
    assert dict(alert.reasons) == {"BackOff": 3, "CrashLoopBackOff": 2}
    assert alert.facts["restart_count"] == 2, alert.facts
    assert alert.facts["exit_code"] == 1
    assert alert.facts["node_ready"] == "True"
    assert gets == {"pods": 1}  # only the ghost; nothing for the cached Pod or its Node


async def test_a_malformed_pod_is_logged_and_skipped(api_double: RunningDouble) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    bad = crash_looping(1)
    bad["metadata"].update(name="bad-0", uid="3f1c0d7e-1a2b-4c3d-9e8f-0000000000bb")
    bad["status"]["containerStatuses"][0]["restartCount"] = "one"
    await api.put_object("pods", bad)
    with capture_logs() as logs:
        async with running_daemon(api_double.kubeconfig, MemoryStore(), recorder, DETECTORS) as d:
            await started(api, d)
            await api.put_object("pods", bad)
            await api.put_object("pods", crash_looping(1))
            [alert] = await recorder.wait_for(1)
    assert alert.regarding.name == POD[1]
    skipped = [e["event"] for e in logs if "skipped" in e["event"]]
    assert skipped == ["malformed listed pod skipped", "malformed watch line skipped"]


async def test_watch_objects_alone_enriches_from_the_cache_and_detects_nothing(
    api_double: RunningDouble,
) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    await api.put_object("pods", crash_looping(4))
    await api.put_object("nodes", load_object("node-ready"))
    config = {"enrichment": {"enabled": True, "watch_objects": True}}
    async with running_daemon(api_double.kubeconfig, MemoryStore(), recorder, config) as d:
        await started(api, d)
        assert [r.detector for r in d.object_runners] == [None, None]
        await api.put_object("pods", crash_looping(5))  # no detectors: not an alert
        await api.create_event(*POD[:1], "BackOff", POD[1])
        [alert] = await recorder.wait_for(1)
        gets = dict(api.stats.gets_of)
        assert await marker(api, recorder) == 1  # (its Pod is not cached: one GET)
    assert alert.reason == "BackOff"
    assert (alert.facts["restart_count"], alert.facts["node_ready"]) == (5, "True")
    assert gets == {}


async def test_a_forbidden_node_watch_is_explained_and_pods_still_alert(
    api_double: RunningDouble,
) -> None:
    api, recorder = api_double.api, RecordingNotifier()
    api.forbidden.add("nodes")
    await api.put_object("pods", healthy_pod())
    with capture_logs() as logs:
        async with running_daemon(api_double.kubeconfig, MemoryStore(), recorder, DETECTORS) as d:
            await api.wait_watches_of("pods", 1)
            await until(lambda: d.object_runners[0].listed.is_set(), "the Pods listed")
            await api.put_object("pods", crash_looping(1))
            [alert] = await recorder.wait_for(1)
    assert alert.reason == "CrashLoopBackOff"
    refused = [e for e in logs if e["event"] == "the API server refused the node watch"]
    assert len(refused) == 1  # once, however often the watch retries
    assert refused[0]["status"] == 403
    assert '{apiGroups: [""], resources: [nodes], verbs: [get, list, watch]}' in refused[0]["fix"]
    assert "deploy/rbac-detectors.yaml" in refused[0]["fix"]
