"""The spool: what was appended and not acknowledged comes back after a crash, once, in order."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kube_event_watcher.notifiers.spool import (
    PendingIndex,
    Spool,
    alert_from_dict,
    alert_to_dict,
    spool_file_name,
)
from kube_event_watcher.pipeline.aggregate import Aggregator
from tests.factories import T0, aggregation, numbered_alert, occurrence
from tests.notifiers_support import ids


def _open(path: Path, **kwargs: int) -> Spool:
    spool = Spool(path, fsync=False, **kwargs)
    spool.open()
    return spool


def test_alert_round_trips_through_json() -> None:
    alert = numbered_alert(7)
    assert alert_from_dict(alert_to_dict(alert)) == alert


def test_a_group_alert_round_trips_with_its_members() -> None:
    agg = Aggregator(aggregation(group={"wait": "0s"}))
    [alert] = agg.add(occurrence(), T0)
    assert alert.members
    assert alert_from_dict(orjson.loads(orjson.dumps(alert_to_dict(alert)))) == alert


def test_unacknowledged_alerts_replay_in_order(tmp_path: Path) -> None:
    spool = _open(tmp_path / "r.jsonl")
    alerts = [numbered_alert(i) for i in range(10)]
    entries = [spool.append(a, 100.0 + i) for i, a in enumerate(alerts)]
    spool.ack([entries[0].seq, entries[3].seq])
    spool.ack([entries[4].seq])
    spool.close()

    again = _open(tmp_path / "r.jsonl")
    replayed = list(again.entries())
    assert ids(e.alert for e in replayed) == ids(
        a for i, a in enumerate(alerts) if i not in (0, 3, 4)
    )
    assert replayed[0].queued_at == 101.0
    # New numbers continue after the old ones: order holds across restarts.
    assert again.append(numbered_alert(99), 0.0).seq == 11


def test_read_after_returns_a_bounded_batch(tmp_path: Path) -> None:
    spool = _open(tmp_path / "r.jsonl")
    for i in range(10):
        spool.append(numbered_alert(i), 0.0)
    batch = spool.read_after(3, limit=4)
    assert [e.seq for e in batch] == [4, 5, 6, 7]


def test_compaction_shrinks_the_file_and_keeps_pending(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    spool = _open(path, compact_after=5)
    entries = [spool.append(numbered_alert(i), 0.0) for i in range(8)]
    before = path.stat().st_size
    for entry in entries[:6]:
        spool.ack([entry.seq])
        if spool.compact_due:
            spool.compact()
    assert path.stat().st_size < before / 2
    assert [e.seq for e in spool.entries()] == [7, 8]
    spool.append(numbered_alert(8), 0.0)
    spool.close()
    assert [e.seq for e in _open(path).entries()] == [7, 8, 9]


def test_receiver_names_become_safe_file_names() -> None:
    assert spool_file_name("oncall-dingtalk") == "oncall-dingtalk.spool.jsonl"
    odd = spool_file_name("../payments slack")
    assert "/" not in odd
    assert odd.endswith(".spool.jsonl")
    assert odd != spool_file_name("../payments_slack")


# A crash can stop the process at any byte of any write. Build a history of appends and acks,
# cut the file at a random byte, reopen: exactly the complete, unacknowledged adds come back.
ops = st.lists(st.one_of(st.just("add"), st.integers(min_value=0, max_value=30)), max_size=40)


@given(history=ops, cut=st.floats(min_value=0, max_value=1))
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_kill_at_any_byte_replays_every_unacked_alert_once_in_order(
    tmp_path: Path, history: list[str | int], cut: float
) -> None:
    path = tmp_path / "crash.jsonl"
    path.unlink(missing_ok=True)
    spool = _open(path, compact_after=10**9)
    # (file size after the write, the alerts pending at that point)
    checkpoints: list[tuple[int, list[str]]] = [(0, [])]
    pending: dict[int, str] = {}
    n = 0
    for op in history:
        if op == "add":
            entry = spool.append(numbered_alert(n), 0.0)
            pending[entry.seq] = entry.alert.notification_id
            n += 1
        elif pending:
            seq = list(pending)[int(op) % len(pending)]
            spool.ack([seq])
            del pending[seq]
        else:
            continue
        checkpoints.append((spool.size_bytes, list(pending.values())))
    spool.close()
    size = path.stat().st_size
    cut_at = int(size * cut)
    with path.open("r+b") as f:
        f.truncate(cut_at)
    # The state is the one after the last write that was complete at the cut.
    expected = [p for end, p in checkpoints if end <= cut_at][-1]
    again = _open(path)
    assert ids(e.alert for e in again.entries()) == expected
    # The torn tail is gone: appending again gives a readable file.
    again.append(numbered_alert(1000), 0.0)
    again.close()
    assert ids(e.alert for e in _open(path).entries()) == [
        *expected,
        numbered_alert(1000).notification_id,
    ]


def test_a_batch_costs_one_fsync_and_acks_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: a storm's batch is one disk flush; acks are written, not flushed (a
    process crash keeps them; only a machine crash can re-send, with the same ids)."""
    flushes: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (flushes.append(fd), real_fsync(fd))[1])
    spool = Spool(tmp_path / "r.spool.jsonl")
    spool.open()  # flushes once: what a kill -9 left in the page cache is made durable
    flushes.clear()
    entries = spool.append_many([numbered_alert(i) for i in range(50)], T0)
    assert len(flushes) == 1
    assert [e.seq for e in entries] == list(range(entries[0].seq, entries[0].seq + 50))
    spool.ack([e.seq for e in entries[:10]])
    assert len(flushes) == 1
    spool.close()
    reopened = Spool(tmp_path / "r.spool.jsonl")
    reopened.open()
    assert ids(e.alert for e in reopened.entries()) == ids(e.alert for e in entries[10:])


def test_an_unsynced_append_counts_as_durable_only_after_its_sync_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alerts that wait for a checkpoint are written without an fsync; `synced_seq` says
    they are durable only once the job the checkpoint runs (or a compaction) flushed them."""
    flushes: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (flushes.append(fd), real_fsync(fd))[1])
    spool = Spool(tmp_path / "r.spool.jsonl")
    spool.open()
    flushes.clear()
    first = spool.append_many([numbered_alert(1)], T0, [1], sync=False)
    second = spool.append_many([numbered_alert(2)], T0, [2], sync=False)
    assert flushes == [] and spool.synced_seq < first[0].seq
    job = spool.sync_job()
    assert job is not None
    third = spool.append_many([numbered_alert(3)], T0, [3], sync=False)
    job()
    assert len(flushes) == 1
    assert spool.synced_seq == second[0].seq, "the job covers what was written before it"
    assert spool.synced_seq < third[0].seq
    assert spool.sync_job() is not None
    spool.ack([first[0].seq, second[0].seq])
    spool.compact()
    assert spool.synced_seq == third[0].seq, "a compaction writes every pending alert durably"
    assert spool.sync_job() is None


def test_a_failed_sync_has_the_file_rewritten_before_anything_counts_as_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = _open(tmp_path / "r.jsonl")
    spool.fsync = True
    entry = spool.append_many([numbered_alert(1)], T0, [1], sync=False)[0]
    job = spool.sync_job()
    assert job is not None
    real_fsync = os.fsync

    def failing(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError, match="No space"):
        job()
    assert spool.synced_seq < entry.seq and spool.rewrite_due and spool.compact_due
    assert spool.sync_job() is None, "no fsync can vouch for it now: a rewrite must"
    monkeypatch.setattr(os, "fsync", real_fsync)
    spool.compact()
    assert spool.synced_seq == entry.seq and not spool.rewrite_due
    assert ids(e.alert for e in spool.entries()) == ids([entry.alert])


def test_a_full_disk_mid_append_leaves_no_torn_line_before_later_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = _open(tmp_path / "r.jsonl")
    first = spool.append(numbered_alert(1), 1.0)
    real_pwrite = os.pwrite

    def half_then_full(fd: int, data: bytes | memoryview, offset: int) -> int:
        if len(data) > 20:
            return real_pwrite(fd, bytes(data)[:20], offset)  # a short write ...
        raise OSError(28, "No space left on device")  # ... then the disk is full

    monkeypatch.setattr(os, "pwrite", half_then_full)
    with pytest.raises(OSError, match="No space"):
        spool.append(numbered_alert(2), 2.0)
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    third = spool.append(numbered_alert(3), 3.0)
    spool.close()
    again = _open(tmp_path / "r.jsonl")
    assert [e.seq for e in again.entries()] == [first.seq, third.seq]
    assert again.torn_lines == 0


def test_an_ack_that_cannot_be_written_is_done_and_written_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = _open(tmp_path / "r.jsonl")
    entries = [spool.append(numbered_alert(i), float(i)) for i in range(3)]
    real_pwrite = os.pwrite

    def full(fd: int, data: bytes | memoryview, offset: int) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(OSError, match="No space"):
        spool.ack([entries[0].seq])
    assert len(spool) == 2, "done in memory at once"
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    spool.ack([entries[1].seq])  # carries the first one's ack too
    spool.close()
    again = _open(tmp_path / "r.jsonl")
    assert [e.seq for e in again.entries()] == [entries[2].seq]


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.integers(1, 3), st.integers(0, 9)),
            st.tuples(st.just("done"), st.integers(0, 60), st.just(0)),
        ),
        max_size=300,
    )
)
def test_the_pending_index_agrees_with_a_dict_of_its_entries(
    ops: list[tuple[str, int, int]],
) -> None:
    index, model = PendingIndex(), dict[int, tuple[int, int, int]]()
    seq = 0
    for op, value, mark in ops:
        if op == "add":
            seq += value  # sequence numbers grow, with gaps (as after a restart)
            index.add(seq, seq * 10, value, mark)
            model[seq] = (seq * 10, value, mark)
        else:
            assert index.discard(value) == (value in model)
            model.pop(value, None)
        assert len(index) == len(model)
        assert index.first() == min(model, default=None)
    assert [(s, o, n, m) for s, o, n, m in index.items()] == [(s, *model[s]) for s in sorted(model)]
    assert [s for s, *_ in index.items(after=seq // 2)] == sorted(s for s in model if s > seq // 2)
    assert index.highest_mark() == max((m for *_, m in model.values()), default=0)


def test_the_pending_index_trims_what_is_done_off_its_front() -> None:
    index = PendingIndex()
    for seq in range(1, 20_001):
        index.add(seq, seq, 1, 0)
    for seq in range(1, 15_001):
        assert index.discard(seq)
    assert len(index) == 5000 and index.first() == 15_001
    assert len(index._seqs) < 10_000, "the done front was cut off"
    assert [s for s, *_ in index.items(after=19_998)] == [19_999, 20_000]


def test_compaction_copies_scattered_pending_lines_in_bounded_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kube_event_watcher.notifiers.spool as spool_module

    monkeypatch.setattr(spool_module, "COPY_CHUNK", 3000)  # a few lines a run
    path = tmp_path / "r.jsonl"
    spool = _open(path, compact_after=10**9)
    entries = spool.append_many([numbered_alert(i) for i in range(200)], 0.0)
    spool.ack([e.seq for e in entries if e.seq % 3 == 0])
    spool.compact()
    kept = [e for e in entries if e.seq % 3]
    assert [e.alert.notification_id for e in spool.entries()] == ids(e.alert for e in kept)
    spool.close()
    again = _open(path)
    assert [e.seq for e in again.entries()] == [e.seq for e in kept]
    assert path.stat().st_size == again.size_bytes
