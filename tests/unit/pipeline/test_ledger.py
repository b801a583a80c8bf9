from __future__ import annotations

import base64
import uuid
from array import array
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kube_event_watcher.pipeline.ledger import SeenLedger


def test_observe_returns_only_the_increment() -> None:
    ledger = SeenLedger()
    assert ledger.observe("u", 1) == 1
    assert ledger.observe("u", 1) == 0
    assert ledger.observe("u", 4) == 3
    assert ledger.observe("u", 2) == 0  # an older view never un-counts
    assert ledger.seen_count("u") == 4


def test_retain_only_drops_what_a_relist_no_longer_has() -> None:
    ledger = SeenLedger()
    for uid in "abc":
        ledger.observe(uid, 1)
    assert ledger.retain_only(["a", "c"]) == 1
    assert "b" not in ledger and len(ledger) == 2


def test_round_trips_through_json() -> None:
    ledger = SeenLedger()
    ledger.observe("x", 3)
    assert SeenLedger.from_json(ledger.to_json()).seen_count("x") == 3


def test_a_corrupt_snapshot_is_refused() -> None:
    with pytest.raises(ValueError, match="mapping of uid to count"):
        SeenLedger.from_json(b'{"x": "three"}')


# --- the compact table: the same answers as a plain dict, whatever the uids and counts ----

UUIDS = [str(uuid.UUID(int=i * 0x9E3779B97F4A7C15 % (1 << 128))) for i in range(40)]
UIDS = st.sampled_from(
    [*UUIDS, "a", "B", UUIDS[0].upper(), "not-a-uuid-but-36-chars-long-xxxxxxx", "ü" * 36]
)
COUNTS = st.one_of(st.integers(1, 5), st.just(2**31), st.just(2**40), st.integers(-1, 0))
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("observe"), UIDS, COUNTS),
        st.tuples(st.just("forget"), UIDS, st.just(0)),
        st.tuples(st.just("relist"), st.lists(UIDS, max_size=30), st.just(0)),
        st.tuples(st.just("retain"), st.lists(UIDS, max_size=30), st.just(0)),
        st.tuples(st.just("restarted"), st.lists(UIDS, max_size=30), st.just(0)),
    ),
    max_size=120,
)


class DictLedger:
    """The reference: what the ledger did when it was a dict."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def observe(self, uid: str, count: int) -> int:
        previous = self.counts.get(uid)
        if previous is None:
            self.counts[uid] = count
            return count
        if count > previous:
            self.counts[uid] = count
            return count - previous
        return 0

    def retain_only(self, uids: list[str]) -> int:
        gone = [u for u in self.counts if u not in set(uids)]
        for uid in gone:
            del self.counts[uid]
        return len(gone)


@given(OPS)
@settings(max_examples=300, deadline=None)
def test_the_compact_ledger_answers_as_a_dict_would(ops: list[tuple[str, Any, int]]) -> None:
    ledger, model = SeenLedger(), DictLedger()
    for op, arg, count in ops:
        if op == "observe":
            assert ledger.observe(arg, count) == model.observe(arg, count)
        elif op == "forget":
            ledger.forget(arg)
            model.counts.pop(arg, None)
        elif op == "retain":
            assert ledger.retain_only(arg) == model.retain_only(arg)
        else:  # a relist that lists `arg`, observing each with its known count (or 1)
            if op == "restarted":  # a pass that is abandoned (expired continue token)
                ledger.begin_relist()
                for uid in UUIDS[:3]:  # also uids the real pass will not list
                    model.observe(uid, 1)
                    ledger.observe(uid, 1)
            ledger.begin_relist()
            for uid in arg:
                known = model.counts.get(uid, 1)
                assert ledger.observe(uid, known) == model.observe(uid, known)
            assert ledger.end_relist() == model.retain_only(arg)
        assert len(ledger) == len(model.counts)
        assert dict(ledger.items()) == model.counts
    for uid in set(UUIDS) | {"a", "B"}:
        assert ledger.seen_count(uid) == model.counts.get(uid)
        assert (uid in ledger) == (uid in model.counts)
    assert dict(SeenLedger.from_json(ledger.to_json()).items()) == model.counts


def test_a_large_ledger_grows_and_shrinks_with_the_live_set() -> None:
    ledger = SeenLedger()
    uids = [str(uuid.UUID(int=i << 64 | i)) for i in range(20_000)]
    for uid in uids:
        assert ledger.observe(uid, 1) == 1
    for uid in uids[::2]:
        ledger.forget(uid)
    assert len(ledger) == 10_000
    assert all(ledger.observe(uid, 1) == 0 for uid in uids[1::2])
    ledger.begin_relist()
    for uid in uids[1:100:2]:
        ledger.observe(uid, 2)
    assert ledger.end_relist() == 10_000 - 50
    assert dict(ledger.items()) == {uid: 2 for uid in uids[1:100:2]}


def test_the_checkpoint_form_is_compact_and_older_checkpoints_still_load() -> None:
    ledger = SeenLedger()
    uids = [str(uuid.UUID(int=i * 7919 << 70)) for i in range(1000)]
    for i, uid in enumerate(uids):
        ledger.observe(uid, i % 5 + 1)
    ledger.observe("legacy-uid", 3)
    data = ledger.to_json()
    assert len(data) < 30 * 1000 + 200  # ~27 bytes an event, not a JSON key each
    assert dict(SeenLedger.from_json(data).items()) == dict(ledger.items())
    older = orjson.dumps(dict(ledger.items()))  # what the first checkpoints held
    assert dict(SeenLedger.from_json(older).items()) == dict(ledger.items())
    keys = [uuid.UUID(uid).int for uid in uids]
    halves = {  # the checkpoint's form: each uid as two little-endian 64-bit halves
        "hi": base64.b64encode(array("Q", [k >> 64 for k in keys]).tobytes()).decode(),
        "lo": base64.b64encode(array("Q", [k & (1 << 64) - 1 for k in keys]).tobytes()).decode(),
        "count": base64.b64encode(array("I", [i % 5 + 1 for i in range(1000)]).tobytes()).decode(),
    }
    v1 = orjson.dumps({"format": "uuid128-v1", **halves, "other": {"legacy-uid": 3}})
    assert dict(SeenLedger.from_json(v1).items()) == dict(ledger.items())


@pytest.mark.parametrize(
    "damage",
    [
        {"hi": "!!"},
        {"count": ""},
        {"count": "AAAAAA=="},
        {"count": base64.b64encode(array("I", [1 | 1 << 31]).tobytes()).decode()},
        {"other": {"u": "x"}},
    ],
)
def test_a_damaged_compact_snapshot_is_refused(damage: dict[str, Any]) -> None:
    ledger = SeenLedger()
    ledger.observe(str(uuid.UUID(int=1 << 90)), 2)
    doc = {**orjson.loads(ledger.to_json()), **damage}
    with pytest.raises(ValueError, match="ledger snapshot is damaged"):
        SeenLedger.from_json(orjson.dumps(doc))


def test_the_daemon_checkpoint_round_trips_the_ledger() -> None:
    from kube_event_watcher.daemon import Checkpoint
    from kube_event_watcher.kube.watching import WatchScope

    ledger = SeenLedger()
    ledger.observe(str(uuid.UUID(int=5 << 100)), 4)
    ledger.observe("u", 2)
    data = Checkpoint("42", ledger).to_json(WatchScope("c", None, None), 0.0)
    again = Checkpoint.from_json(data)
    assert again.resource_version == "42"
    assert dict(again.ledger.items()) == dict(ledger.items())


def test_the_snapshot_converts_chunk_by_chunk_whatever_the_uids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kube_event_watcher.pipeline import ledger as module

    monkeypatch.setattr(module, "_CHUNK", 4)  # several chunks, some with odd uids in them
    ledger = SeenLedger()
    uids = [str(uuid.UUID(int=i * 0x9E3779B97F4A7C15 << 40)) for i in range(10)]
    uids[5] = uids[5].upper()
    uids[6] = uids[6][:-1] + "g"  # dashes in place, one character not hex
    uids[7] = uids[7][:7] + "-" + uids[7][7] + uids[7][9:]  # a dash one place early
    uids[9] = "not-a-uuid-but-36-chars-long-xxxxxxx"
    counts = {uid: i + 1 for i, uid in enumerate(uids)}
    counts[uids[2]] = 2**31 - 1  # the largest count the table holds, next to the gen bit
    for uid, count in counts.items():
        ledger.observe(uid, count)
    ledger.begin_relist()  # generation bits set: the snapshot stores plain counts
    snapshot = orjson.loads(ledger.to_json())
    assert set(snapshot["other"]) == {uids[5], uids[6], uids[7], uids[9]}
    again = SeenLedger.from_json(orjson.dumps(snapshot))
    assert dict(again.items()) == counts


# -- incremental checkpoints: the changes since the last one rebuild the ledger -----------


ops = st.lists(
    st.one_of(
        st.tuples(st.just("observe"), st.integers(0, 12), st.integers(1, 6)),
        st.tuples(st.just("observe_big"), st.integers(0, 12), st.just(1 << 31)),
        st.tuples(st.just("forget"), st.integers(0, 12), st.just(0)),
        st.tuples(st.just("relist"), st.just(0), st.just(0)),
        st.tuples(st.just("commit"), st.just(0), st.just(0)),
    ),
    max_size=60,
)


def _uid(n: int) -> str:
    return str(uuid.UUID(int=n)) if n % 4 else f"other-shape-{n}"


@settings(max_examples=200, deadline=None)
@given(ops)
def test_changes_replayed_on_the_last_full_version_give_the_same_ledger(
    script: list[tuple[str, int, int]],
) -> None:
    live = SeenLedger()
    live.track_changes()
    base = SeenLedger.from_json(live.to_json())
    journal: list[dict[str, int]] = []
    for op, n, count in script:
        if op == "observe":
            live.observe(_uid(n), count)
        elif op == "observe_big":
            live.observe(_uid(n), (live.seen_count(_uid(n)) or 0) + count)
        elif op == "forget":
            live.forget(_uid(n))
        elif op == "relist":  # a relist that still has the even uids
            live.begin_relist()
            for uid, seen in list(live.items()):
                if uid.endswith(("0", "2", "4", "6", "8")):
                    live.observe(uid, seen)
            live.end_relist()
        else:
            journal.append(live.take_changes())
    journal.append(live.take_changes())
    for changes in journal:
        base.apply_changes(orjson.loads(orjson.dumps(changes)))
    assert dict(base.items()) == dict(live.items())


def test_a_count_that_outgrows_the_table_is_a_change_not_a_forget() -> None:
    ledger = SeenLedger()
    ledger.track_changes()
    uid = str(uuid.uuid4())
    ledger.observe(uid, 3)
    ledger.take_changes()
    ledger.observe(uid, 1 << 31)  # moves to the plain dict
    assert ledger.take_changes() == {uid: 1 << 31}


def test_changes_are_refused_when_not_counts() -> None:
    with pytest.raises(ValueError, match="not a count"):
        SeenLedger().apply_changes({"u": -1})
