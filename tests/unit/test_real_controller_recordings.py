"""Replays of what real controllers recorded (tests/fixtures/real_controllers, made by
tests/e2e/record_local_cluster.py on a LocalCluster): the kubelet's legacy recorder (kwok),
the scheduler's events.k8s.io recorder and the controller-manager's, as they really write."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from kube_event_watcher.config.schema import Config
from kube_event_watcher.replay import replay

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
