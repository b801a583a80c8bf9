"""Replays of what real controllers recorded (tests/fixtures/real_controllers, made by
tests/e2e/record_local_cluster.py on a LocalCluster): the kubelet's legacy recorder (kwok),
the scheduler's events.k8s.io recorder and the controller-manager's, as they really write."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from kube_event_watcher.cli import main
from kube_event_watcher.config.schema import Config
from kube_event_watcher.notifiers.rendering import alert_record
from kube_event_watcher.replay import replay
from kube_event_watcher.replay_objects import RecordedObjects, read_objects

RECORDINGS = Path(__file__).parents[1] / "fixtures" / "real_controllers"


def recording(name: str) -> bytes:
    return (RECORDINGS / f"{name}.jsonl").read_bytes()


@pytest.mark.parametrize(
    ("scenario", "group", "reasons"),
    [
        ("crashloop", "default/kew-crashloop/crashloop", {"BackOff"}),
        ("oomkilled", "default/kew-oomkilled/oomkilled", {"BackOff"}),
        ("imagepull", "default/kew-imagepull/imagepull", {"Failed"}),
        ("unschedulable", "default/kew-unschedulable/greedy", {"FailedScheduling"}),
        ("node-unreachable", "default/kew-node-unreachable/on-doomed-node", {"NodeNotReady"}),
    ],
)
def test_each_incident_is_one_firing_and_one_resolved(
    scenario: str, group: str, reasons: set[str]
) -> None:
    result = replay(Config.model_validate({}), recording(scenario))
    assert [(a.group_key, a.status) for _, a in result.sent] == [
        (group, "firing"),
        (group, "resolved"),
    ]
    firing = result.sent[0][1]
    assert set(firing.reasons) == reasons
    assert firing.objects == {"Pod": 1}


def test_a_legacy_recorders_count_is_one_occurrence_per_repeat() -> None:
    # kwok's BackOff is one Event object, MODIFIED with deprecatedCount 2, 3, ...
    lines = [orjson.loads(line) for line in recording("crashloop").splitlines()]
    counts = [
        line["object"]["deprecatedCount"]
        for line in lines
        if line["object"].get("reason") == "BackOff"
    ]
    assert counts == list(range(1, len(counts) + 1)) and len(counts) >= 3
    result = replay(Config.model_validate({}), recording("crashloop"))
    assert result.sent[0][1].count == len(counts)


def test_the_scheduler_writes_a_new_event_per_attempt() -> None:
    # The regarding reference carries the Pod's resourceVersion, which each attempt changes,
    # so client-go's events.k8s.io recorder never finds the earlier one isomorphic: no series.
    lines = [orjson.loads(line) for line in recording("unschedulable").splitlines()]
    failed = [line for line in lines if line["object"].get("reason") == "FailedScheduling"]
    assert len(failed) >= 2
    assert {line["type"] for line in failed} == {"ADDED"}
    assert len({line["object"]["metadata"]["name"] for line in failed}) == len(failed)
    assert all("series" not in line["object"] for line in failed)
    result = replay(Config.model_validate({}), recording("unschedulable"))
    assert result.sent[0][1].count == len(failed)


@pytest.mark.parametrize("scenario", ["stuck-terminating", "node-not-ready"])
def test_what_events_alone_do_not_show(scenario: str) -> None:
    # A Pod stuck Terminating and a Node whose live kubelet reports NotReady leave only Normal
    # Events (Killing; the kubelet's NodeNotReady): only Pod/Node state can tell (#15).
    lines = [orjson.loads(line) for line in recording(scenario).splitlines()]
    assert {line["object"]["type"] for line in lines if line["type"] != "BOOKMARK"} == {"Normal"}
    assert replay(Config.model_validate({}), recording(scenario)).sent == []


# -- replay --objects: enriched from the recorded Pods and Nodes as they were then ----------


def objects(scenario: str) -> RecordedObjects:
    found = RecordedObjects()
    for kind in ("pods", "nodes"):
        path = RECORDINGS / f"{scenario}.{kind}.jsonl"
        if path.exists():
            found.add(read_objects(path.read_bytes(), str(path)), str(path))
    return found


@pytest.mark.parametrize(
    ("scenario", "cause", "facts"),
    [
        ("crashloop", "crash", {"exit_code": 1, "last_terminated_reason": "Error"}),
        ("oomkilled", "oom", {"exit_code": 137, "last_terminated_reason": "OOMKilled"}),
        ("imagepull", "image", {"container_state": "waiting", "restart_count": 0}),
        ("unschedulable", "unschedulable", {"pod_phase": "Pending"}),
        ("node-unreachable", "node", {"node_ready": "Unknown", "node": "kwok-node-doomed"}),
    ],
)
def test_replay_with_recorded_objects_tells_what_the_live_daemon_would(
    scenario: str, cause: str, facts: dict[str, object]
) -> None:
    result = replay(Config.model_validate({}), recording(scenario), objects=objects(scenario))
    firing = result.sent[0][1]
    assert {k: firing.facts.get(k) for k in facts} == facts
    record = alert_record(firing)
    assert record["likely_cause"]["code"] == cause
    # Owners were not recorded: the notification says so rather than "not found". The
    # Pod of the lost Node has no owner; it and its Node are all there is to know.
    bare = scenario == "node-unreachable"
    expected = "complete" if bare else "no ReplicaSet in the recorded objects"
    assert expected in str(firing.facts.get("enrichment"))


def test_recorded_objects_answer_as_of_a_revision() -> None:
    pod: dict[str, object] = {"kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}}
    store = RecordedObjects()
    store.add(
        [
            ("ADDED", pod | {"metadata": {"name": "p", "namespace": "ns", "resourceVersion": "5"}}),
            (
                "MODIFIED",
                pod
                | {
                    "status": {"phase": "Running"},
                    "metadata": {"name": "p", "namespace": "ns", "resourceVersion": "9"},
                },
            ),
            (
                "DELETED",
                pod | {"metadata": {"name": "p", "namespace": "ns", "resourceVersion": "12"}},
            ),
        ],
        "pods",
    )

    def phase_at(revision: int) -> object:
        store.at = revision
        found = asyncio.run(store.get_pod("ns", "p"))
        return "absent" if found is None else (found.get("status") or {}).get("phase")

    assert [phase_at(r) for r in (4, 5, 8, 9, 11, 12, 99)] == [
        "absent",
        None,
        None,
        "Running",
        "Running",
        "absent",
        "absent",
    ]
    with pytest.raises(LookupError, match="no Node in the recorded objects"):
        asyncio.run(store.get_node("n1"))


def test_replay_cli_takes_objects_and_refuses_a_bad_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    scenario = RECORDINGS / "oomkilled"
    args = ["replay", f"{scenario}.jsonl", "--objects", f"{scenario}.pods.jsonl"]
    assert main(args) == 0
    assert "likely cause: out of memory: container app was OOMKilled" in capsys.readouterr().out
    bad = tmp_path / "pods.jsonl"
    bad.write_text('{"type": "ADDED", "object": {"kind": "Pod", "metadata": {}}}\n')
    assert main(["replay", f"{scenario}.jsonl", "--objects", str(bad)]) == 2
    assert "an object without kind or metadata.name" in capsys.readouterr().err
