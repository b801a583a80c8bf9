"""The Pod and Node state detectors: what a status shows becomes one occurrence, once."""

from __future__ import annotations

import copy
import dataclasses
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kube_event_watcher.config.detectors import DetectorsConfig
from kube_event_watcher.pipeline.aggregate import Aggregator
from kube_event_watcher.pipeline.detect import REPORTING_CONTROLLER, Detector, synthetic_uid
from kube_event_watcher.pipeline.enrich import node_facts, pod_facts
from kube_event_watcher.pipeline.ledger import SeenLedger
from kube_event_watcher.pipeline.model import Occurrence
from tests.factories import T0, aggregation, occurrence
from tests.fixtures import load_object


def detector(**config: Any) -> Detector:
    return Detector("prod", SeenLedger(), DetectorsConfig.model_validate(config))


def crashloop(restarts: int = 7, state: dict[str, Any] | None = None) -> dict[str, Any]:
    pod = load_object("pod-crashloop")
    app = pod["status"]["containerStatuses"][0]
    app["restartCount"] = restarts
    if state is not None:
        app["state"] = state
    return pod


RUNNING = {"running": {"startedAt": "2027-01-15T02:12:00Z"}}


def test_a_crash_loop_is_one_occurrence_about_the_pod_counting_its_restarts() -> None:
    d = detector()
    [occ] = d.pod_changed(None, pod_facts(crashloop(7)), T0)
    assert (occ.reason, occ.type, occ.count, occ.total) == ("CrashLoopBackOff", "Warning", 7, 7)
    assert occ.regarding.kind == "Pod" and occ.regarding.name == "web-7d9f8c6b5-x2x9k"
    assert occ.regarding.uid == "3f1c0d7e-1a2b-4c3d-9e8f-000000000001"
    assert occ.regarding.field_path == "spec.containers{app}"
    assert occ.reporting_controller == REPORTING_CONTROLLER
    assert "restarted 7 times" in occ.note and "last exit code 1 (Error)" in occ.note
    assert uuid.UUID(occ.uid)  # a UUID: the ledger keeps it compact
    # The same state again (a relist, a label change) is nothing new; a restart is one more.
    assert d.pod_changed(pod_facts(crashloop(7)), pod_facts(crashloop(7)), T0 + 1) == []
    [again] = d.pod_changed(pod_facts(crashloop(7)), pod_facts(crashloop(8)), T0 + 60)
    assert (again.count, again.total, again.uid) == (1, 8, occ.uid)


def test_a_relist_while_the_container_runs_between_crashes_does_not_restart_the_count() -> None:
    d = detector()
    d.pod_changed(None, pod_facts(crashloop(7)), T0)
    d.ledger.begin_relist()
    assert d.pod_changed(None, pod_facts(crashloop(7, RUNNING)), T0 + 1) == []
    d.ledger.end_relist()
    [occ] = d.pod_changed(None, pod_facts(crashloop(8)), T0 + 2)
    assert (occ.count, occ.total) == (1, 8)


def test_oom_killed_once_per_termination() -> None:
    d = detector()
    pod = load_object("pod-oomkilled")
    [occ] = d.pod_changed(None, pod_facts(pod), T0)
    assert occ.reason == "OOMKilled" and occ.count == 1
    assert "postgres was killed: OOMKilled (exit code 137), restart count 3" in occ.note
    assert occ.regarding.name == "db-0"
    assert d.pod_changed(pod_facts(pod), pod_facts(pod), T0 + 1) == []
    later = copy.deepcopy(pod)
    later["status"]["containerStatuses"][0]["restartCount"] = 4
    [more] = d.pod_changed(pod_facts(pod), pod_facts(later), T0 + 2)
    assert (more.count, more.total) == (1, 4)


def test_exit_code_137_counts_as_oom_and_a_terminated_container_is_not_counted_twice() -> None:
    d = detector()
    pod = load_object("pod-oomkilled")
    status = pod["status"]["containerStatuses"][0]
    status["restartCount"] = 0
    status["state"] = {"terminated": {"exitCode": 137, "reason": "Error"}}
    status["lastState"] = {}
    [occ] = d.pod_changed(None, pod_facts(pod), T0)
    assert (occ.reason, occ.total) == ("OOMKilled", 1)
    # It restarts: the same termination is now lastState, with restartCount 1.
    status["restartCount"] = 1
    status["lastState"], status["state"] = status["state"], RUNNING
    assert d.pod_changed(None, pod_facts(pod), T0 + 1) == []


def test_image_pull_back_off_once_per_image_while_the_reasons_alternate() -> None:
    d = detector()
    pod = load_object("pod-imagepull")
    [occ] = d.pod_changed(None, pod_facts(pod), T0)
    assert occ.reason == "ImagePullBackOff"
    assert "cannot pull image registry.example.com/report:v2" in occ.note
    assert "failed to resolve reference" in occ.note
    err = copy.deepcopy(pod)
    err["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] = "ErrImagePull"
    assert d.pod_changed(pod_facts(pod), pod_facts(err), T0 + 1) == []
    assert d.pod_changed(pod_facts(err), pod_facts(pod), T0 + 2) == []
    # Pulled at last, then failing again later: a new finding.
    pulled = copy.deepcopy(pod)
    pulled["status"]["containerStatuses"][0]["state"] = RUNNING
    assert d.pod_changed(pod_facts(pod), pod_facts(pulled), T0 + 3) == []
    assert len(d.pod_changed(pod_facts(pulled), pod_facts(pod), T0 + 4)) == 1


def test_a_pod_stuck_terminating_is_reported_after_the_grace_by_the_tick() -> None:
    d = detector(terminating_after="5m")
    pod = pod_facts(load_object("pod-terminating-stuck"))
    assert pod.deletion_time is not None
    assert d.pod_changed(None, pod, pod.deletion_time + 10) == []
    assert d.tick(pod.deletion_time + 299) == []
    [occ] = d.tick(pod.deletion_time + 301)
    assert occ.reason == "PodStuckTerminating"
    assert "still there 301s later" in occ.note
    assert occ.first_seen == pod.deletion_time
    assert d.tick(pod.deletion_time + 900) == []
    d.pod_deleted(pod)
    assert d.terminating == {} and len(d.ledger) == 0


def test_node_conditions_once_per_time_they_turn_bad() -> None:
    d = detector(node_conditions=["NotReady", "MemoryPressure"])
    sick = node_facts(load_object("node-notready-tainted"))
    healthy = node_facts(load_object("node-ready"))
    found = d.node_changed(None, sick, T0)
    assert sorted(o.reason for o in found) == ["NodeMemoryPressure", "NodeNotReady"]
    not_ready = next(o for o in found if o.reason == "NodeNotReady")
    assert not_ready.regarding.kind == "Node" and not_ready.namespace == ""
    assert "Node worker-3 Ready=False (KubeletNotReady)" in not_ready.note
    assert d.node_changed(sick, sick, T0 + 1) == []
    assert d.node_changed(sick, healthy_as(healthy, sick), T0 + 2) == []
    assert len(d.node_changed(healthy_as(healthy, sick), sick, T0 + 3)) == 2


def test_a_node_condition_counts_once_bad_for_the_grace() -> None:
    d = detector(node_condition_after="1m")
    sick = node_facts(load_object("node-notready-tainted"))
    since = sick.details[0].since
    assert since is not None
    assert d.node_changed(None, sick, since + 30) == []  # e.g. a Node joining: network not up
    assert d.tick(since + 59) == []
    assert sorted(o.reason for o in d.tick(since + 61)) == ["NodeMemoryPressure", "NodeNotReady"]
    assert d.tick(since + 120) == []
    # No lastTransitionTime: the grace counts from when the detector first saw it bad.
    bare = dataclasses.replace(
        sick, uid="other", details=tuple(p._replace(since=None) for p in sick.details)
    )
    assert d.node_changed(None, bare, T0) == []
    assert len(d.tick(T0 + 61)) == 2
    # A restart forgets when it was first seen bad; a relist right after keeps what was
    # reported (it is in the ledger), and nothing is reported again once the grace passes.
    d = Detector("prod", SeenLedger.from_json(d.ledger.to_json()), d.config)
    d.ledger.begin_relist()
    assert d.node_changed(None, bare, T0 + 100) == []
    d.ledger.end_relist()
    assert d.tick(T0 + 200) == []
    d.node_deleted(bare)
    assert "other" not in {n.uid for n in d.sick_nodes.values()}


def healthy_as(healthy: Any, sick: Any) -> Any:
    """The healthy fixture under the sick Node's name and uid (the same Node, recovered)."""
    return dataclasses.replace(healthy, name=sick.name, uid=sick.uid)


def test_a_first_start_records_what_is_already_wrong_without_reporting_it() -> None:
    d = detector()
    d.baseline = True
    assert d.pod_changed(None, pod_facts(crashloop(7)), T0) == []
    d.baseline = False
    [occ] = d.pod_changed(None, pod_facts(crashloop(8)), T0 + 1)
    assert occ.count == 1


def test_a_deleted_pod_leaves_nothing_in_the_ledger() -> None:
    d = detector()
    for name in ("pod-crashloop", "pod-oomkilled", "pod-imagepull"):
        d.pod_changed(None, pod_facts(load_object(name)), T0)
        d.pod_deleted(pod_facts(load_object(name)))
    assert len(d.ledger) == 0


def test_synthetic_uids_are_stable_across_versions() -> None:
    """Checkpointed ledgers hold these uids: a changed derivation would report everything
    again after an upgrade."""
    assert synthetic_uid("a", "b") != synthetic_uid("a", "c")
    assert synthetic_uid("pod-uid", "app", "CrashLoopBackOff") == (
        "ea5cc85d-ae39-55a4-8cf8-74168879de5e"
    )


def test_kubelet_events_and_the_detector_finding_are_one_incident() -> None:
    """A crash-looping Pod: the kubelet's BackOff Events and the detector's CrashLoopBackOff
    finding about the same Pod go out as one group notification, not two messages."""
    agg = Aggregator(aggregation(group={"wait": "30s", "interval": "5m"}))
    pod = crashloop(7)
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    alerts = []
    for i in range(3):
        backoff = occurrence(name, reason="BackOff", uid=uid, event_uid=f"ev-{i}", at=T0 + i)
        alerts += agg.add(backoff, T0 + i)
    finding: Occurrence = detector().pod_changed(None, pod_facts(pod), T0 + 5)[0]
    alerts += agg.add(finding, T0 + 5)
    alerts += agg.tick(T0 + 31)
    assert len(alerts) == 1
    [alert] = alerts
    assert dict(alert.reasons) == {"CrashLoopBackOff": 7, "BackOff": 3}
    assert dict(alert.objects) == {"Pod": 1}
    assert alert.labels["owner"] == "web"
    assert agg.tick(T0 + 400) == []  # nothing new joined: no second message


# Steps of a crash-looping container's life, as the watch shows it: a status with the
# restart count grown by `grown` (waiting in CrashLoopBackOff, or running between crashes),
# a relist that lists the Pod as it is, or a daemon restart from the checkpoint.
_step = st.one_of(
    st.tuples(st.just("status"), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("relist"), st.just(0), st.just(False)),
    st.tuples(st.just("restart"), st.just(0), st.just(False)),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(_step, min_size=1, max_size=30))
def test_restarts_are_counted_exactly_once_whatever_the_watch_does(
    steps: list[tuple[str, int, bool]],
) -> None:
    """However statuses, relists and restarts interleave, the CrashLoopBackOff occurrences
    count each restart once: their counts add up to the restart count last seen waiting."""
    d = detector()
    restarts, waiting, reported, expected = 0, False, 0, 0
    for kind, grown, now_waiting in steps:
        if kind == "restart":
            d = Detector("prod", SeenLedger.from_json(d.ledger.to_json()), d.config)
            continue
        if kind == "status":
            restarts, waiting = restarts + grown, now_waiting
        pod = pod_facts(crashloop(restarts, None if waiting else RUNNING))
        if kind == "relist":
            d.ledger.begin_relist()
        reported += sum(
            o.count for o in d.pod_changed(None, pod, T0) if o.reason == "CrashLoopBackOff"
        )
        if kind == "relist":
            d.ledger.end_relist()
        if waiting and restarts:
            expected = restarts
    assert reported == expected
