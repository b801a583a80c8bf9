"""The aggregate stage's rules, each driven by a fake `now` (no sleeping, no wall clock)."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from kube_event_watcher.pipeline.aggregate import Aggregator, SnapshotMismatch, simulate
from kube_event_watcher.pipeline.grouping import workload_name
from kube_event_watcher.pipeline.model import ObjectRef, Occurrence
from tests.factories import T0, aggregation, occurrence


def pod(name: str) -> ObjectRef:
    return ObjectRef(kind="Pod", namespace="shop", name=name, uid=name)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (pod("web-7d4b9c5f8-x2k9p"), "web"),
        (pod("web-7d4b9c-x2k1p"), "web"),
        (pod("api-server-5f6d8b7c9d-zq2wv"), "api-server"),
        (pod("db-2"), "db"),
        (pod("node-exporter-x7k2p"), "node-exporter"),
        (pod("backup-28391234-x2k9p"), "backup"),
        (pod("standalone"), "standalone"),
        (pod("hello-world"), "hello-world"),  # 'world' has a vowel: not a generated suffix
        (ObjectRef("ReplicaSet", "shop", "web-7d4b9c5f8", "u"), "web"),
        (ObjectRef("Job", "shop", "backup-28391234", "u"), "backup"),
        (ObjectRef("Node", "", "node-12", "u"), "node-12"),
    ],
)
def test_workload_name_strips_what_controllers_append(ref: ObjectRef, expected: str) -> None:
    assert workload_name(ref) == expected


def test_a_crash_looping_rollout_is_one_notification_after_group_wait() -> None:
    agg = Aggregator(aggregation())
    names = ["web-7d4b9c5f8-x2k9p", "web-7d4b9c5f8-b5v7q", "web-7d4b9c5f8-m9c2z"]
    for i, name in enumerate(names):
        assert agg.add(occurrence(name, at=T0 + i), T0 + i) == []
    assert agg.next_deadline() == T0 + 30
    assert agg.tick(T0 + 29) == []
    [alert] = agg.tick(T0 + 30)
    assert alert.status == "firing"
    assert alert.group_key == "prod/shop/web"
    assert alert.objects == {"Pod": 3}
    assert alert.member_count == 3
    assert alert.new_members == 3
    assert alert.count == 3
    assert alert.first_seen == T0
    assert alert.reasons == {"BackOff": 3}
    assert alert.regarding.name == "web"
    assert alert.labels["owner"] == "web"
    assert [m.regarding.name for m in alert.members] == list(reversed(names))
    assert agg.tick(T0 + 31) == []


def test_series_increments_add_to_the_count_without_another_notification() -> None:
    agg = Aggregator(aggregation(group={"wait": "0s"}))
    [first] = agg.add(occurrence(count=1, total=1), T0)
    assert first.count == 1
    for i, total in enumerate(range(2, 12), start=1):
        assert agg.add(occurrence(count=1, total=total, at=T0 + 20 * i), T0 + 20 * i) == []
    assert agg.add(occurrence(count=5, total=16, at=T0 + 230), T0 + 230) == []
    [resolved] = agg.tick(T0 + 230 + 600)
    assert resolved.status == "resolved"
    assert resolved.count == 16
    assert resolved.last_seen == T0 + 230


def test_wait_zero_notifies_from_add() -> None:
    agg = Aggregator(aggregation(group={"wait": "0s"}))
    [alert] = agg.add(occurrence(), T0)
    assert alert.status == "firing"
    assert alert.sequence == 1


def test_a_group_grown_threefold_is_announced_one_interval_after_the_last_notification() -> None:
    agg = Aggregator(aggregation())
    agg.add(occurrence("web-7d4b9c5f8-x2k9p"), T0)
    [first] = agg.tick(T0 + 30)
    agg.add(occurrence("web-7d4b9c5f8-b5v7q", at=T0 + 60), T0 + 60)
    assert agg.next_deadline() == T0 + 60 + 600  # two Pods of one: not news, only the resolve
    agg.add(occurrence("web-7d4b9c5f8-m9c2z", at=T0 + 70), T0 + 70)  # three: news
    assert agg.next_deadline() == T0 + 30 + 300
    assert agg.tick(T0 + 329) == []
    [update] = agg.tick(T0 + 330)
    assert update.status == "firing"
    assert update.key == first.key
    assert update.notification_id != first.notification_id
    assert (update.sequence, update.new_members, update.member_count) == (2, 2, 3)


def test_news_after_the_interval_goes_out_when_it_arrives() -> None:
    agg = Aggregator(aggregation(group={"update_factor": 1}))
    agg.add(occurrence("web-7d4b9c5f8-x2k9p"), T0)
    agg.tick(T0 + 30)
    agg.add(occurrence("web-7d4b9c5f8-x2k9p", total=2, at=T0 + 300), T0 + 300)
    [update] = agg.add(occurrence("web-7d4b9c5f8-b5v7q", at=T0 + 400), T0 + 400)
    assert update.new_members == 1


def test_a_rollout_failing_over_a_minute_is_one_message_and_its_resolve() -> None:
    """20 Pods start crash-looping over 57 s, longer than group.wait: the first message
    names the ones so far; the rest are not news, and the resolve counts all 20."""
    agg = Aggregator(aggregation())
    timeline = [
        (T0 + 3 * i, occurrence(f"web-7d4b9c5f8-{i:05d}", uid=f"u{i}", at=T0 + 3 * i))
        for i in range(20)
    ]
    alerts = [a for _, a in simulate(agg, timeline)]
    assert [a.status for a in alerts] == ["firing", "resolved"]
    first, resolved = alerts
    assert first.objects == {"Pod": 10}
    assert resolved.objects == {"Pod": 20}
    assert resolved.first_seen == T0
    assert resolved.last_seen == T0 + 57


def test_a_group_by_namespace_names_its_workloads() -> None:
    agg = Aggregator(aggregation(group={"by": ["cluster", "namespace"]}))
    agg.add(occurrence("web-7d4b9c5f8-x2k9p"), T0)
    agg.add(occurrence("api-5f6d8b7c9d-zq2wv"), T0)
    agg.add(occurrence("web-7d4b9c5f8-b5v7q"), T0)
    [alert] = agg.tick(T0 + 30)
    assert alert.workloads == ("api", "web")


def test_pods_taken_down_by_their_node_join_the_nodes_group() -> None:
    nodes = {"web-7d4b9c5f8-x2k9p": "node-3", "api-5f6d8b7c9d-zq2wv": "node-3"}
    agg = Aggregator(aggregation(), node_of=lambda occ: nodes.get(occ.regarding.name))
    node = ObjectRef("Node", "", "node-3", "n3")
    agg.add(occurrence("node-3", kind="Node", namespace="", uid="n3", reason="NodeNotReady"), T0)
    for name in nodes:
        agg.add(
            occurrence(name, reason="NodeNotReady", note="Node is not ready", at=T0 + 1), T0 + 1
        )
    agg.add(occurrence("web-7d4b9c5f8-x2k9p", at=T0 + 2), T0 + 2)  # BackOff: its own group
    alerts = agg.tick(T0 + 32)
    by_key = {a.group_key: a for a in alerts}
    assert set(by_key) == {"prod//node-3", "prod/shop/web"}
    outage = by_key["prod//node-3"]
    assert outage.objects == {"Node": 1, "Pod": 2}
    assert outage.regarding == node
    assert outage.workloads == ("api", "node-3", "web")


def test_without_the_pods_node_a_node_not_ready_pod_groups_as_usual() -> None:
    agg = Aggregator(aggregation(), node_of=lambda occ: None)
    agg.add(occurrence(reason="NodeNotReady"), T0)
    [alert] = agg.tick(T0 + 30)
    assert alert.group_key == "prod/shop/web"


def test_one_objects_reasons_are_listed_side_by_side() -> None:
    agg = Aggregator(aggregation(group={"max_members": 3}))
    agg.add(occurrence("web-7d4b9c5f8-x2k9p"), T0)
    agg.add(occurrence("web-7d4b9c5f8-b5v7q", at=T0 + 1), T0 + 1)
    agg.add(occurrence("web-7d4b9c5f8-x2k9p", reason="Unhealthy", at=T0 + 2), T0 + 2)
    [alert] = agg.tick(T0 + 30)
    assert [(m.regarding.name, m.reason) for m in alert.members] == [
        ("web-7d4b9c5f8-x2k9p", "Unhealthy"),
        ("web-7d4b9c5f8-x2k9p", "BackOff"),
        ("web-7d4b9c5f8-b5v7q", "BackOff"),
    ]


@pytest.mark.parametrize(
    ("late", "why"),
    [
        (occurrence("web-7d4b9c5f8-b5v7q", reason="Unhealthy", at=T0 + 60), "a new reason"),
        (occurrence("api-5f6d8b7c9d-zq2wv", at=T0 + 60), "a new workload"),
    ],
)
def test_a_new_reason_or_workload_is_news(late: Occurrence, why: str) -> None:
    agg = Aggregator(aggregation(group={"by": ["cluster", "namespace"]}))
    agg.add(occurrence("web-7d4b9c5f8-x2k9p"), T0)
    agg.tick(T0 + 30)
    agg.add(late, T0 + 60)
    [update] = agg.tick(T0 + 330)
    assert update.status == "firing", why
    assert update.new_members == 1


def test_a_known_key_with_a_new_reason_or_turning_warning_is_news() -> None:
    agg = Aggregator(aggregation(dedup={"key": ["cluster", "regarding.uid"]}))
    agg.add(occurrence(reason="Pulling", type="Normal"), T0)
    [first] = agg.tick(T0 + 30)
    assert first.type == "Normal"
    agg.add(occurrence(reason="Pulling", type="Normal", total=2, at=T0 + 40), T0 + 40)
    assert agg.next_deadline() == T0 + 40 + 600  # the same again: only the resolve is due
    agg.add(occurrence(reason="Failed", at=T0 + 50), T0 + 50)
    [update] = agg.tick(T0 + 330)
    assert (update.type, update.reasons) == ("Warning", {"Failed": 1, "Pulling": 2})


def test_a_repeating_key_is_not_news_and_a_long_incident_is_repeated() -> None:
    agg = Aggregator(aggregation(group={"repeat": "1h"}))
    alerts = list(
        simulate(
            agg,
            [(T0 + 240 * i, occurrence(total=i + 1, at=T0 + 240 * i)) for i in range(20)],
        )
    )
    assert [(when - T0, a.status, a.sequence) for when, a in alerts] == [
        (30, "firing", 1),
        (3630, "firing", 2),
        (240 * 19 + 600, "resolved", 3),
    ]


def test_resolve_after_quiet_and_only_once() -> None:
    agg = Aggregator(aggregation())
    agg.add(occurrence(), T0)
    [firing] = agg.tick(T0 + 30)
    agg.add(occurrence(total=2, at=T0 + 100), T0 + 100)
    assert agg.next_deadline() == T0 + 700
    [resolved] = agg.tick(T0 + 700)
    assert resolved.status == "resolved"
    assert resolved.key == firing.key
    assert resolved.notification_id != firing.notification_id
    assert [m.firing for m in resolved.members] == [False]
    assert agg.tick(T0 + 10_000) == []
    assert agg.next_deadline() is None
    assert agg.live_groups == agg.live_keys == 0


def test_after_a_resolve_the_next_occurrence_starts_a_new_life() -> None:
    agg = Aggregator(aggregation(group={"wait": "0s"}))
    [first] = agg.add(occurrence(total=1), T0)
    [resolved] = agg.tick(T0 + 600)
    [again] = agg.add(occurrence(total=2, at=T0 + 900), T0 + 900)
    assert again.key == first.key == resolved.key
    assert again.sequence == 1
    assert again.notification_id != first.notification_id


def test_a_member_quiet_for_the_dedup_window_is_shown_cleared() -> None:
    agg = Aggregator(aggregation(dedup={"window": "2m"}, group={"update_factor": 1}))
    agg.add(occurrence("web-7d4b9c5f8-x2k9p"), T0)
    agg.tick(T0 + 30)
    agg.add(occurrence("web-7d4b9c5f8-b5v7q", at=T0 + 300), T0 + 300)
    [update] = agg.add(occurrence("web-7d4b9c5f8-b5v7q", total=2, at=T0 + 330), T0 + 330)
    firing = {m.regarding.name: m.firing for m in update.members}
    assert firing == {"web-7d4b9c5f8-x2k9p": False, "web-7d4b9c5f8-b5v7q": True}


def test_threshold_holds_back_until_count_within_window() -> None:
    agg = Aggregator(
        aggregation(
            group={"wait": "0s", "by": ["cluster", "namespace", "owner", "reason"]},
            thresholds=[{"match": {"reason": "FailedScheduling"}, "count": 5, "within": "3m"}],
        )
    )
    sched = "FailedScheduling"
    # 4 within 3 minutes, then a gap: the first ones fall out of the sliding window.
    for i in range(4):
        assert agg.add(occurrence(reason=sched, total=i + 1, at=T0 + 30 * i), T0 + 30 * i) == []
    assert agg.add(occurrence(reason=sched, total=5, at=T0 + 200), T0 + 200) == []
    # Other reasons are not held back.
    [other] = agg.add(occurrence(reason="BackOff", at=T0 + 201), T0 + 201)
    assert other.reason == "BackOff"
    # In the window (T0+25, T0+205]: 30, 60, 90, 200, 205 -> the fifth passes.
    [alert] = agg.add(occurrence(reason=sched, total=6, at=T0 + 205), T0 + 205)
    assert alert.reason == sched
    assert alert.count == 6  # every occurrence of the key, not just the last five


def test_threshold_counts_series_increments() -> None:
    agg = Aggregator(
        aggregation(
            group={"wait": "0s"},
            thresholds=[{"match": {"reason": "FailedScheduling"}, "count": 5, "within": "3m"}],
        )
    )
    assert agg.add(occurrence(reason="FailedScheduling", count=4), T0) == []
    [alert] = agg.add(occurrence(reason="FailedScheduling", count=2, total=6), T0 + 10)
    assert alert.count == 6


def test_threshold_candidates_that_never_fire_are_forgotten() -> None:
    agg = Aggregator(
        aggregation(thresholds=[{"match": {"reason": ".*"}, "count": 5, "within": "1m"}])
    )
    agg.add(occurrence(), T0)
    assert agg.live_keys == 1
    agg.tick(T0 + 299)
    assert agg.live_keys == 1
    agg.tick(T0 + 300)  # max(within, dedup window) later
    assert agg.live_keys == 0


def test_dedup_key_fields_are_configurable() -> None:
    agg = Aggregator(
        aggregation(dedup={"key": ["cluster", "reason"]}, group={"by": ["cluster", "reason"]})
    )
    for i, name in enumerate(["a-1", "b-2", "c-3"]):
        agg.add(occurrence(name, at=T0 + i), T0 + i)
    [alert] = agg.tick(T0 + 30)
    assert alert.member_count == 1
    assert alert.count == 3


def test_caps_evict_the_oldest_and_count_it() -> None:
    agg = Aggregator(
        aggregation(max_keys=100, max_groups=10, group={"by": ["cluster", "regarding.uid"]})
    )
    for i in range(12):
        agg.add(occurrence(f"pod-{i}", at=T0 + i), T0 + i)
    assert agg.live_groups == 10
    assert agg.evictions == {"keys": 0, "groups": 2}
    names = {a.regarding.name for a in agg.tick(T0 + 100)}
    assert names == {f"pod-{i}" for i in range(2, 12)}

    agg = Aggregator(aggregation(max_keys=100))
    for i in range(105):
        agg.add(occurrence(f"web-7d4b9c5f8-{i:05d}", uid=f"u{i}", at=T0), T0)
    assert agg.live_keys == 100
    assert agg.evictions["keys"] == 5
    [alert] = agg.tick(T0 + 30)
    assert alert.member_count == 105  # the evicted members still count
    assert len(alert.members) == 20  # listed members are capped


def test_disabled_aggregation_passes_every_occurrence_through() -> None:
    agg = Aggregator(aggregation(enabled=False))
    [alert] = agg.add(occurrence(), T0)
    assert alert.count == 1
    assert alert.occurrences


def test_config_rejects_a_resolve_before_the_first_notification() -> None:
    with pytest.raises(ValidationError, match="resolve_after"):
        aggregation(group={"wait": "10m", "resolve_after": "5m"})
    with pytest.raises(ValidationError, match="at most once"):
        aggregation(group={"by": ["reason", "reason"]})


# -- durable state ---------------------------------------------------------------------------


def test_restart_inside_the_wait_sends_the_same_notification_once() -> None:
    timeline = [(T0 + i, occurrence(f"web-7d4b9c5f8-{i:05d}", uid=f"u{i}")) for i in range(3)]
    straight = list(simulate(Aggregator(aggregation()), timeline))

    before = Aggregator(aggregation())
    list(simulate(before, timeline, drain=False))
    after = Aggregator(aggregation())
    after.restore(before.snapshot())
    restarted = list(simulate(after, [], drain=True))
    assert [(t, a.notification_id) for t, a in restarted] == [
        (t, a.notification_id) for t, a in straight
    ]


def test_restart_after_the_notification_does_not_notify_again() -> None:
    agg = Aggregator(aggregation())
    agg.add(occurrence(), T0)
    [firing] = agg.tick(T0 + 30)
    restored = Aggregator(aggregation())
    restored.restore(agg.snapshot())
    assert restored.add(occurrence(total=2, at=T0 + 60), T0 + 60) == []
    assert restored.tick(T0 + 659) == []
    [resolved] = restored.tick(T0 + 660)
    assert resolved.status == "resolved"
    assert resolved.key == firing.key
    assert resolved.count == 2
    assert resolved.sequence == 2


def test_a_restart_remembers_what_the_last_message_told() -> None:
    agg = Aggregator(aggregation())
    agg.add(occurrence("web-7d4b9c5f8-x2k9p"), T0)
    agg.tick(T0 + 30)
    restored = Aggregator(aggregation())
    restored.restore(agg.snapshot())
    restored.add(occurrence("web-7d4b9c5f8-b5v7q", at=T0 + 60), T0 + 60)
    assert restored.next_deadline() == T0 + 60 + 600  # two of one Pod told: not news
    restored.add(occurrence("web-7d4b9c5f8-m9c2z", at=T0 + 70), T0 + 70)
    [update] = restored.tick(T0 + 330)
    assert update.objects == {"Pod": 3}


def test_a_snapshot_from_before_the_news_rules_takes_what_is_there_as_told() -> None:
    agg = Aggregator(aggregation())
    agg.add(occurrence("web-7d4b9c5f8-x2k9p"), T0)
    agg.tick(T0 + 30)
    doc = orjson.loads(agg.snapshot())
    doc["groups"] = [row[:16] for row in doc["groups"]]  # the rows version 1 wrote
    restored = Aggregator(aggregation())
    restored.restore(orjson.dumps(doc))
    restored.add(occurrence("web-7d4b9c5f8-x2k9p", total=2, at=T0 + 60), T0 + 60)
    restored.add(occurrence("web-7d4b9c5f8-b5v7q", at=T0 + 60), T0 + 60)
    assert restored.next_deadline() == T0 + 60 + 600
    restored.add(occurrence("web-7d4b9c5f8-m9c2z", reason="Unhealthy", at=T0 + 70), T0 + 70)
    [update] = restored.tick(T0 + 330)
    assert update.reasons == {"BackOff": 3, "Unhealthy": 1}


def test_snapshot_keeps_thresholds_and_evictions() -> None:
    config = aggregation(
        max_groups=10,
        group={"wait": "0s", "by": ["cluster", "regarding.uid", "reason"]},
        thresholds=[{"match": {"reason": "FailedScheduling"}, "count": 3, "within": "3m"}],
    )
    agg = Aggregator(config)
    for i in range(11):
        agg.add(occurrence(f"p{i}"), T0)
    agg.add(occurrence("x", reason="FailedScheduling", count=2), T0)
    restored = Aggregator(config)
    restored.restore(agg.snapshot())
    assert restored.evictions == {"keys": 0, "groups": 1}
    assert (restored.live_keys, restored.live_groups) == (agg.live_keys, agg.live_groups)
    [alert] = restored.add(occurrence("x", reason="FailedScheduling", total=3), T0 + 5)
    assert alert.count == 3


def test_a_snapshot_for_other_fields_is_refused() -> None:
    agg = Aggregator(aggregation())
    agg.add(occurrence(), T0)
    other = Aggregator(aggregation(group={"by": ["cluster", "reason"]}))
    with pytest.raises(SnapshotMismatch, match=r"group\.by"):
        other.restore(agg.snapshot())
    assert other.live_keys == 0
    with pytest.raises(ValueError, match="unknown format"):
        other.restore(b"{}")


def test_notification_ids_are_stable_for_the_same_input() -> None:
    timeline = [
        (T0 + 50 * i, occurrence(f"web-7d4b9c5f8-{i % 4:05d}", uid=f"u{i % 4}", total=i // 4 + 1))
        for i in range(40)
    ]
    first = [a.notification_id for _, a in simulate(Aggregator(aggregation()), timeline)]
    second = [a.notification_id for _, a in simulate(Aggregator(aggregation()), timeline)]
    assert first == second
    assert len(set(first)) == len(first)
