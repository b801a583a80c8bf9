from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kube_event_watcher.kube.wire import DecodeError, decode_event
from kube_event_watcher.pipeline import normalize
from kube_event_watcher.pipeline.ledger import SeenLedger
from kube_event_watcher.pipeline.model import RawEvent
from kube_event_watcher.pipeline.normalize import (
    MalformedEvent,
    Normalizer,
    event_count,
    parse_time,
)


def event(uid: str = "u1", **extra: Any) -> RawEvent:
    """An Event as the watch decodes it (the same decoder, from JSON bytes)."""
    base: dict[str, Any] = {
        "metadata": {
            "name": "web-0.1",
            "namespace": "shop",
            "uid": uid,
            "resourceVersion": "7",
            "creationTimestamp": "2026-11-24T01:00:00Z",
        },
        "eventTime": "2026-11-24T01:00:00.500000Z",
        "reason": "BackOff",
        "note": "Back-off restarting failed container",
        "type": "Warning",
        "regarding": {"kind": "Pod", "namespace": "shop", "name": "web-0", "uid": "p1"},
        "reportingController": "kubelet",
    }
    base.update(extra)
    return decode_event(orjson.dumps(base))


def test_a_new_event_is_one_occurrence_with_its_fields() -> None:
    occ = Normalizer("prod", SeenLedger()).apply("ADDED", event())
    assert occ is not None
    assert (occ.cluster, occ.uid, occ.reason, occ.type, occ.count, occ.total) == (
        "prod",
        "u1",
        "BackOff",
        "Warning",
        1,
        1,
    )
    assert occ.regarding.describe() == "Pod/shop/web-0"
    assert occ.first_seen == parse_time("2026-11-24T01:00:00.500000Z")
    assert occ.identity == "prod/u1/1"


def test_only_a_grown_series_count_is_a_new_occurrence() -> None:
    normalizer = Normalizer("c", SeenLedger())
    assert normalizer.apply("ADDED", event()) is not None
    same = event(note="edited")
    assert normalizer.apply("MODIFIED", same) is None
    grown = event(series={"count": 4, "lastObservedTime": "2026-11-24T01:05:00.000000Z"})
    occ = normalizer.apply("MODIFIED", grown)
    assert occ is not None and (occ.count, occ.total) == (3, 4)
    assert occ.last_seen == parse_time("2026-11-24T01:05:00Z")
    assert normalizer.apply("MODIFIED", grown) is None


def test_legacy_deprecated_count_counts_like_a_series() -> None:
    normalizer = Normalizer("c", SeenLedger())
    normalizer.apply("ADDED", event(deprecatedCount=2))
    occ = normalizer.apply("MODIFIED", event(deprecatedCount=5))
    assert occ is not None and occ.count == 3
    assert event_count(event()) == 1


def test_deleted_prunes_the_ledger() -> None:
    ledger = SeenLedger()
    normalizer = Normalizer("c", ledger)
    normalizer.apply("ADDED", event())
    assert "u1" in ledger
    assert normalizer.apply("DELETED", event()) is None
    assert "u1" not in ledger


def test_events_older_than_not_before_are_recorded_but_not_reported() -> None:
    ledger = SeenLedger()
    normalizer = Normalizer("c", ledger, not_before=parse_time("2026-11-24T02:00:00Z"))
    assert normalizer.apply("ADDED", event()) is None
    assert ledger.seen_count("u1") == 1
    normalizer.not_before = None
    later = event(series={"count": 2, "lastObservedTime": "2026-11-24T02:10:00.000000Z"})
    occ = normalizer.apply("MODIFIED", later)
    assert occ is not None and occ.count == 1


@pytest.mark.parametrize(
    ("raw", "why"),
    [({}, "no metadata"), ({"metadata": {"name": "x"}}, "no metadata.uid")],
)
def test_malformed_events_say_why(raw: dict[str, Any], why: str) -> None:
    with pytest.raises(MalformedEvent, match=why):
        Normalizer("c", SeenLedger()).apply("ADDED", decode_event(orjson.dumps(raw)))


def test_a_stamp_of_the_wrong_type_is_refused_while_decoding() -> None:
    """Not a time of 0.0 downstream: the decoder names the field (and the watch skips it)."""
    with pytest.raises(
        DecodeError, match=r"Expected `str \| null`, got `array` - at `\$.eventTime`"
    ):
        event(eventTime=["not", "a", "time"])


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(1, 50)), max_size=60))
def test_occurrence_counts_add_up_to_the_highest_count_seen(changes: list[tuple[str, int]]) -> None:
    """However the watch replays or reorders counts, each uid yields exactly its max count."""
    normalizer = Normalizer("c", SeenLedger())
    total: dict[str, int] = {}
    for uid, count in changes:
        occ = normalizer.apply(
            "MODIFIED",
            event(uid=uid, series={"count": count, "lastObservedTime": "2026-11-24T01:00:00Z"}),
        )
        if occ is not None:
            total[uid] = total.get(uid, 0) + occ.count
    expected: dict[str, int] = {}
    for uid, count in changes:
        expected[uid] = max(expected.get(uid, 0), count)
    assert total == expected


@pytest.mark.parametrize(
    ("stamps", "first", "last"),
    [
        ({"eventTime": "yesterday"}, 0.0, 0.0),
        (
            {"eventTime": None, "deprecatedFirstTimestamp": "2026-11-24T01:00:00Z"},
            parse_time("2026-11-24T01:00:00Z"),
            parse_time("2026-11-24T01:00:00Z"),
        ),
        (
            {"series": {"count": 2, "lastObservedTime": "2026-11-24T01:00:09.250000Z"}},
            parse_time("2026-11-24T01:00:00.500000Z"),
            parse_time("2026-11-24T01:00:09.250000Z"),
        ),
    ],
)
def test_times_are_read_from_the_right_stamp_or_default(
    stamps: dict[str, Any], first: float, last: float
) -> None:
    normalizer = Normalizer("c", SeenLedger())
    for uid in ("a", "b"):  # the second answer comes from the remembered parses
        occ = normalizer.apply("ADDED", event(uid, **stamps))
        assert occ is not None
        assert (occ.first_seen, occ.last_seen) == (first, last)


def test_remembered_parses_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(normalize, "TIME_MEMO_SIZE", 3)
    normalizer = Normalizer("c", SeenLedger())
    for second in range(10):
        stamp = f"2026-11-24T01:00:{second:02d}Z"
        occ = normalizer.apply("ADDED", event(f"u{second}", eventTime=stamp))
        assert occ is not None and occ.first_seen == parse_time(stamp)
        assert len(normalizer._times) <= 3
