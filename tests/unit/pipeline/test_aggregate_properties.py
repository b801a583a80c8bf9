"""Invariants of the aggregate stage over arbitrary event streams (hypothesis)."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from kube_event_watcher.pipeline.aggregate import Aggregator, simulate
from kube_event_watcher.pipeline.model import Alert, Occurrence
from tests.factories import T0, aggregation, occurrence

PODS = [f"web-7d4b9c5f8-{s}" for s in ("x2k9p", "b5v7q", "m9c2z")] + ["db-0", "db-1"]
REASONS = ["BackOff", "Unhealthy", "FailedMount"]
WINDOW = 300.0

# (seconds since the previous occurrence, pod, reason, series increment)
steps = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=1500, allow_nan=False),
        st.sampled_from(PODS),
        st.sampled_from(REASONS),
        st.integers(min_value=1, max_value=4),
    ),
    max_size=60,
)


def timeline(raw: list[tuple[float, str, str, int]]) -> list[tuple[float, Occurrence]]:
    at, totals = T0, defaultdict[tuple[str, str], int](int)
    out = []
    for gap, pod, reason, count in raw:
        at += gap
        totals[pod, reason] += count
        out.append(
            (at, occurrence(pod, reason=reason, count=count, total=totals[pod, reason], at=at))
        )
    return out


def run(raw: list[tuple[float, str, str, int]], **config: object) -> list[tuple[float, Alert]]:
    defaults: dict[str, object] = {"dedup": {"window": "5m"}, "group": {"interval": "5m"}}
    return list(simulate(Aggregator(aggregation(**(defaults | config))), timeline(raw)))


@settings(max_examples=60, deadline=None)
@given(steps)
def test_at_most_one_notification_per_key_per_window(
    raw: list[tuple[float, str, str, int]],
) -> None:
    last_firing: dict[str, float] = {}
    for when, alert in run(raw):
        if alert.status != "firing":
            last_firing.pop(alert.key, None)  # a resolve ends the group's life
            continue
        previous = last_firing.get(alert.key)
        assert previous is None or when - previous >= WINDOW, (alert.group_key, previous, when)
        last_firing[alert.key] = when


@settings(max_examples=60, deadline=None)
@given(steps)
def test_counts_add_up_to_the_occurrences(raw: list[tuple[float, str, str, int]]) -> None:
    resolved = [alert for _, alert in run(raw) if alert.status == "resolved"]
    assert sum(a.count for a in resolved) == sum(count for *_, count in raw)
    for alert in resolved:
        assert sum(alert.reasons.values()) == alert.count
        assert sum(m.count for m in alert.members) == alert.count  # under the listing cap


@settings(max_examples=60, deadline=None)
@given(steps)
def test_a_group_resolves_once_per_life_and_only_after_firing(
    raw: list[tuple[float, str, str, int]],
) -> None:
    state: dict[str, str] = {}
    ids: set[str] = set()
    for _, alert in run(raw):
        assert alert.notification_id not in ids
        ids.add(alert.notification_id)
        if alert.status == "resolved":
            assert state.get(alert.key) == "firing", "resolved without firing, or twice"
        else:
            assert state.get(alert.key) != "firing" or alert.sequence > 1
            if state.get(alert.key) != "firing":
                assert alert.sequence == 1
        state[alert.key] = alert.status
    assert all(status == "resolved" for status in state.values())


@settings(max_examples=50, deadline=None)
@given(steps, st.integers(min_value=0, max_value=60))
def test_a_restart_anywhere_changes_nothing(
    raw: list[tuple[float, str, str, int]], cut: int
) -> None:
    """Snapshot after any prefix, restore into a new aggregator: the same notifications."""
    events = timeline(raw)
    cut = min(cut, len(events))
    straight = [(w, a.notification_id) for w, a in run(raw)]

    first = Aggregator(aggregation(dedup={"window": "5m"}, group={"interval": "5m"}))
    before = [(w, a.notification_id) for w, a in simulate(first, events[:cut], drain=False)]
    second = Aggregator(aggregation(dedup={"window": "5m"}, group={"interval": "5m"}))
    second.restore(first.snapshot())
    after = [(w, a.notification_id) for w, a in simulate(second, events[cut:])]
    assert before + after == straight
