"""A receiver's on-disk spool: every alert is appended and made durable (fsynced) before it
can be sent, and marked done (acknowledged) once the platform took it or rejected it for good.

An append fsyncs at once, or, for alerts that wait for a checkpoint anyway (`sync=False`),
is written to the page cache only, and made durable later by `sync_job` (run by the
daemon's commit in the same thread trip as the checkpoint it must precede) or by the lane
before it sends (`synced_seq` says how far the file is known durable).

One JSON-lines file per receiver. An `add` line holds an alert with its sequence number; an
`ack` line lists sequence numbers that are done. Reopening the file replays every alert that
has no ack, in order. A crash mid-write leaves at most a torn last line, which is ignored and
cut off. When enough lines are acknowledged the file is rewritten with only the pending
alerts (atomic write + fsync), so it does not grow without end.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from kube_event_watcher.pipeline.model import Alert, AlertMember, ObjectRef, Occurrence, stable_id
from kube_event_watcher.state.file import atomic_write, write_all

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
COPY_CHUNK = 1 << 20  # bytes read and written at a time when compacting


# --- the alert as JSON (all of it, so a replayed alert is the very same alert) ------------


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    occurrences = [
        {**occ._asdict(), "regarding": occ.regarding._asdict()} for occ in alert.occurrences
    ]
    return {
        "key": alert.key,
        "notification_id": alert.notification_id,
        "status": alert.status,
        "cluster": alert.cluster,
        "namespace": alert.namespace,
        "regarding": alert.regarding._asdict(),
        "reason": alert.reason,
        "type": alert.type,
        "note": alert.note,
        "count": alert.count,
        "first_seen": alert.first_seen,
        "last_seen": alert.last_seen,
        "occurrences": occurrences,
        "labels": dict(alert.labels),
        "facts": dict(alert.facts),
        "group_key": alert.group_key,
        "members": [{**m._asdict(), "regarding": m.regarding._asdict()} for m in alert.members],
        "member_count": alert.member_count,
        "objects": dict(alert.objects),
        "reasons": dict(alert.reasons),
        "sequence": alert.sequence,
        "new_members": alert.new_members,
        "workloads": list(alert.workloads),
    }


def alert_from_dict(doc: Mapping[str, Any]) -> Alert:
    occurrences = tuple(
        Occurrence(**{**occ, "regarding": ObjectRef(**occ["regarding"])})
        for occ in doc.get("occurrences") or ()
    )
    return Alert(
        key=doc["key"],
        notification_id=doc["notification_id"],
        status=doc["status"],
        cluster=doc["cluster"],
        namespace=doc["namespace"],
        regarding=ObjectRef(**doc["regarding"]),
        reason=doc["reason"],
        type=doc["type"],
        note=doc["note"],
        count=doc["count"],
        first_seen=doc["first_seen"],
        last_seen=doc["last_seen"],
        occurrences=occurrences,
        labels=dict(doc.get("labels") or {}),
        facts=dict(doc.get("facts") or {}),
        group_key=doc.get("group_key", ""),
        members=tuple(
            AlertMember(**{**m, "regarding": ObjectRef(**m["regarding"])})
            for m in doc.get("members") or ()
        ),
        member_count=doc.get("member_count", 0),
        objects=dict(doc.get("objects") or {}),
        reasons=dict(doc.get("reasons") or {}),
        sequence=doc.get("sequence", 0),
        new_members=doc.get("new_members", 0),
        workloads=tuple(doc.get("workloads") or ()),
    )


def _dumps(value: Any) -> bytes:
    # Enrichment facts are JSON-like; anything else is kept as its text rather than lost.
    return orjson.dumps(value, default=str)


# --- the spool ---------------------------------------------------------------------------


class PendingIndex:
    """Where each pending alert's line is in the spool file, ~29 bytes an alert.

    A backlog of 100k alerts (a catch-up after a restart, a receiver down for hours) is the
    spool file on disk; in memory it is these parallel arrays in sequence order, not a dict
    of tuples (~170 bytes an alert). Done alerts are flagged and cut off the front as the
    lane acknowledges in order.
    """

    __slots__ = ("_done", "_head", "_lengths", "_live", "_marks", "_offsets", "_seqs")

    def __init__(self) -> None:
        self._seqs = array("q")
        self._offsets = array("q")
        self._lengths = array("q")
        self._marks = array("q")
        self._done = bytearray()
        self._head = 0  # every position before it is done
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def add(self, seq: int, offset: int, length: int, mark: int) -> None:
        """Append a pending alert; sequence numbers only grow."""
        assert not self._seqs or seq > self._seqs[-1], "spool sequence numbers only grow"
        self._seqs.append(seq)
        self._offsets.append(offset)
        self._lengths.append(length)
        self._marks.append(mark)
        self._done.append(0)
        self._live += 1

    def _position(self, seq: int) -> int | None:
        at = bisect.bisect_left(self._seqs, seq, self._head)
        if at < len(self._seqs) and self._seqs[at] == seq and not self._done[at]:
            return at
        return None

    def discard(self, seq: int) -> bool:
        """Mark `seq` done; False when it was not pending."""
        at = self._position(seq)
        if at is None:
            return False
        self._done[at] = 1
        self._live -= 1
        head, done = self._head, self._done
        while head < len(done) and done[head]:
            head += 1
        self._head = head
        if head >= 4096 and head * 2 >= len(done):
            for column in (self._seqs, self._offsets, self._lengths, self._marks):
                del column[:head]
            del done[:head]
            self._head = 0
        return True

    def items(self, after: int = 0) -> Iterator[tuple[int, int, int, int]]:
        """(seq, offset, length, mark) of each pending alert above `after`, in order."""
        start = bisect.bisect_right(self._seqs, after, self._head)
        seqs, offsets, lengths, marks, done = (
            self._seqs,
            self._offsets,
            self._lengths,
            self._marks,
            self._done,
        )
        for at in range(start, len(seqs)):
            if not done[at]:
                yield seqs[at], offsets[at], lengths[at], marks[at]

    def first(self) -> int | None:
        """The lowest pending sequence number."""
        return self._seqs[self._head] if self._head < len(self._seqs) else None

    def highest_mark(self) -> int:
        return max((mark for _, _, _, mark in self.items()), default=0)


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    seq: int
    queued_at: float  # wall time it was spooled: how long it has waited
    alert: Alert
    # The pipeline's emit mark: the alert may go out once a checkpoint covering this mark is
    # durable (0: not derived from the event stream, e.g. a self-alert; sendable at once).
    mark: int = 0


def spool_file_name(receiver: str) -> str:
    """A safe file name for a receiver name (any text in the config)."""
    safe = _SAFE.sub("_", receiver)
    if safe != receiver or not safe:
        safe = f"{safe[:40]}-{stable_id(receiver)[:8]}"
    return f"{safe}.spool.jsonl"


class Spool:
    """Blocking file operations (call them from a worker thread, one at a time).

    Memory holds only the sequence numbers of pending alerts and where they are in the file,
    not the alerts themselves: those are read back in batches by the delivery worker.
    """

    def __init__(self, path: Path, compact_after: int = 1000, fsync: bool = True) -> None:
        self.path = path
        self.compact_after = compact_after
        self.fsync = fsync
        self._pending = PendingIndex()
        self._next_seq = 1
        self._acked_lines = 0  # add lines in the file that are already done
        self._unwritten_acks: list[int] = []  # done, but the ack line could not be written
        self._size = 0
        self._fd: int | None = None
        self.torn_lines = 0
        # Every alert numbered up to this is durable (or done). Raised by whoever made it so
        # (an fsync, a compaction), from any thread: each writes only what is true when it
        # writes, so a lost race leaves it lower than it could be, never higher.
        self._synced_seq = 0
        # An fsync of written lines failed (a full disk with delayed allocation, EIO): the
        # page cache may no longer be written back, so the file is rewritten (`compact`)
        # before anything more counts as durable.
        self.rewrite_due = False

    # -- open / replay ----------------------------------------------------------------------

    def open(self) -> None:
        """Read the file back: which alerts are pending. Cuts off a torn last line."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pending: dict[int, tuple[int, int, int]] = {}
        acked: set[int] = set()
        good_end = 0
        max_seq = 0
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        offset = 0
        while offset < len(data):
            end = data.find(b"\n", offset)
            if end < 0:
                self.torn_lines += 1  # crash mid-append: the alert was never acknowledged
                break
            line = data[offset:end]
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                self.torn_lines += 1
                break
            if "ack" in record:
                for seq in record["ack"]:
                    acked.add(seq)
                    pending.pop(seq, None)
            else:
                seq = int(record["s"])
                max_seq = max(max_seq, seq)
                if seq not in acked:
                    pending[seq] = (offset, end + 1 - offset, int(record.get("m", 0)))
            offset = end + 1
            good_end = offset
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if good_end < len(data):
            os.ftruncate(self._fd, good_end)
        if self.fsync:
            # After a kill -9 the last lines may be in the page cache only: durable now.
            os.fsync(self._fd)
        self._size = good_end
        self._pending = PendingIndex()
        for seq in sorted(pending):
            self._pending.add(seq, *pending[seq])
        self._next_seq = max_seq + 1
        self._synced_seq = max_seq
        self._acked_lines = len(acked)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- what is in it ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def size_bytes(self) -> int:
        return self._size

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    @property
    def synced_seq(self) -> int:
        """Every alert numbered up to this is durable (all of them when fsync is off)."""
        return self._next_seq - 1 if not self.fsync else self._synced_seq

    def _synced_through(self, seq: int) -> None:
        self._synced_seq = max(self._synced_seq, seq)

    @property
    def highest_mark(self) -> int:
        """The highest emit mark among the pending alerts (0: none has one)."""
        return self._pending.highest_mark()

    def first_pending(self) -> int | None:
        """The lowest sequence number not done yet (None: nothing pending)."""
        return self._pending.first()

    def read_after(self, after: int, limit: int) -> list[SpoolEntry]:
        """Up to `limit` pending alerts with a sequence number above `after`, in order."""
        out: list[SpoolEntry] = []
        if limit <= 0:
            return out
        for _, offset, length, _ in self._pending.items(after):
            out.append(self._read(offset, length))
            if len(out) >= limit:
                break
        return out

    def _read(self, offset: int, length: int) -> SpoolEntry:
        assert self._fd is not None, "spool is not open"
        record = orjson.loads(os.pread(self._fd, length, offset))
        return SpoolEntry(
            int(record["s"]),
            float(record["t"]),
            alert_from_dict(record["a"]),
            int(record.get("m", 0)),
        )

    def entries(self) -> Iterator[SpoolEntry]:
        for _, offset, length, _ in list(self._pending.items()):
            yield self._read(offset, length)

    # -- change it --------------------------------------------------------------------------

    def _append(self, data: bytes, sync: bool = True) -> int:
        """Write `data` at the end; all or nothing: after an error (a full disk) the file
        ends where it did, so no torn line sits before the lines written later."""
        assert self._fd is not None, "spool is not open"
        offset = self._size
        try:
            write_all(self._fd, data, offset)
            if sync and self.fsync:
                os.fsync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, offset)
            raise
        self._size = offset + len(data)
        return offset

    def append(self, alert: Alert, queued_at: float, mark: int = 0) -> SpoolEntry:
        """Write one alert durably; when this returns, a crash no longer loses it."""
        return self.append_many([alert], queued_at, [mark])[0]

    def append_many(
        self,
        alerts: Sequence[Alert],
        queued_at: float,
        marks: Sequence[int] | None = None,
        *,
        sync: bool = True,
    ) -> list[SpoolEntry]:
        """Write several alerts with one fsync (a group commit): under a storm the sender
        hands over what it has in one go instead of paying a disk flush per alert. With
        `sync` False the lines only reach the page cache (a short write: the event loop may
        call it): they are durable once `synced_seq` reaches them."""
        lines: list[bytes] = []
        entries: list[SpoolEntry] = []
        for alert, mark in zip(alerts, marks or [0] * len(alerts), strict=True):
            seq = self._next_seq + len(entries)
            record: dict[str, Any] = {"s": seq, "t": queued_at, "a": alert_to_dict(alert)}
            if mark:
                record["m"] = mark
            lines.append(_dumps(record) + b"\n")
            entries.append(SpoolEntry(seq, queued_at, alert, mark))
        offset = self._append(b"".join(lines), sync=sync and not self.rewrite_due)
        for entry, line in zip(entries, lines, strict=True):
            self._pending.add(entry.seq, offset, len(line), entry.mark)
            offset += len(line)
        self._next_seq += len(entries)
        if sync and not self.rewrite_due:
            self._synced_through(self._next_seq - 1)
        return entries

    def sync_job(self) -> Callable[[], None] | None:
        """A blocking call that makes every alert written so far durable (None: they are
        already, or a `compact` must rewrite the file first). Take it in the event loop
        while no spool operation runs in a thread (the lane's lock); run it in any thread:
        it flushes a duplicate of the file descriptor, so a compaction that replaces the
        file meanwhile does no harm (the new file is durable with every pending alert)."""
        through = self._next_seq - 1
        if through <= self.synced_seq or self.rewrite_due or self._fd is None:
            return None
        fd = os.dup(self._fd)

        def run() -> None:
            try:
                if self.synced_seq < through:  # else another flush got there first
                    os.fsync(fd)
            except OSError:
                self.rewrite_due = True
                raise
            finally:
                os.close(fd)
            self._synced_through(through)

        return run

    def void_after(self, mark: int) -> int:
        """Drop the pending alerts whose emit mark is above `mark` (the last checkpoint's):
        the state they came from was never committed, so the event stream yields them again
        from the checkpoint, exactly as they now follow from it. They were never sent (a
        lane sends only what a durable checkpoint covers). Fsynced: a voided alert must not
        come back under a later checkpoint whose marks reach past it."""
        void = [seq for seq, _, _, m in self._pending.items() if m > mark]
        if void:
            self._append(_dumps({"ack": void, "void": True}) + b"\n", sync=True)
            for seq in void:
                self._pending.discard(seq)
            self._acked_lines += len(void)
        return len(void)

    def ack(self, seqs: list[int]) -> None:
        """Mark alerts done (delivered or rejected for good): one short write, no fsync, so
        the delivery lane calls it in the event loop; `compact_due` says when to compact.

        Done at once in memory. When the ack line cannot be written (a full disk), it is
        written with the next ack that can be: until then a crash would send those alerts
        again, with their same ids; the lane goes on either way."""
        done = [seq for seq in seqs if self._pending.discard(seq)]
        unwritten = self._unwritten_acks + done
        if not unwritten:
            return
        # Not fsynced: a process crash keeps what was written (the page cache survives it);
        # only a machine crash can lose a fresh ack, and then the alert is re-sent with its
        # same id (webhook-id, dedup_key, Message-ID), which receivers drop. An fsync per
        # ack halved the throughput of a lane (bench/RESULTS.md, Delivery).
        try:
            self._append(_dumps({"ack": unwritten}) + b"\n", sync=False)
        except OSError:
            self._unwritten_acks = unwritten
            raise
        self._unwritten_acks = []
        self._acked_lines += len(unwritten)

    @property
    def compact_due(self) -> bool:
        """Enough of the file is done lines that `compact` should rewrite it (the caller
        runs it, off the event loop: it rewrites and fsyncs the file)."""
        return self.rewrite_due or (
            self._acked_lines >= self.compact_after and self._acked_lines >= len(self._pending)
        )

    def compact(self) -> None:
        """Rewrite the file with only the pending alerts, copied in runs of adjacent lines
        of up to COPY_CHUNK bytes (a backlog of 100k alerts is ~130 MB: never one buffer)."""
        assert self._fd is not None, "spool is not open"
        fd = self._fd
        pending = PendingIndex()

        def runs() -> Iterator[bytes]:
            offset, start, length = 0, -1, 0
            for seq, old_offset, size, mark in self._pending.items():
                pending.add(seq, offset, size, mark)
                offset += size
                if old_offset == start + length and length < COPY_CHUNK:
                    length += size
                    continue
                if length:
                    yield os.pread(fd, length, start)
                start, length = old_offset, size
            if length:
                yield os.pread(fd, length, start)

        through = self._next_seq - 1
        size = atomic_write(self.path, runs())
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR, 0o600)
        self._pending = pending
        self._size = size
        self._acked_lines = 0
        self._unwritten_acks = []  # the new file holds only what is pending
        self.rewrite_due = False
        self._synced_through(through)  # every pending alert is in the new, fsynced file
