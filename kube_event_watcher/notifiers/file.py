"""Alerts appended to a JSON-lines file, fsynced, and never written twice.

On start the ids of the file's last lines are read back, so an alert re-sent after a crash
(delivered, but its acknowledgement lost) is recognised and not appended again. The highest
series total written per event is kept too: an alert for one event whose occurrences were
already written in part (an HA fail-over re-derives what the old leader sent, and a relist
may merge several bumps into one) is trimmed to the new ones, or dropped when none is new.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict, deque
from pathlib import Path

import orjson
from pydantic import Field

from kube_event_watcher.notifiers.base import (
    Delivered,
    DeliveryResult,
    Notifier,
    ReceiverConfig,
    RetryAfter,
)
from kube_event_watcher.notifiers.rendering import alert_record
from kube_event_watcher.pipeline.model import Alert

EventKey = tuple[str, str]  # (cluster, event uid)

TAIL_BYTES = 4 * 1024 * 1024


class FileConfig(ReceiverConfig):
    path: str = Field(min_length=1)
    fsync: bool = True
    remember: int = Field(default=10_000, ge=0, description="ids kept to drop re-sends")


class FileNotifier(Notifier):
    resolved_by_default = True
    config_model = FileConfig
    can_digest = False  # a log of alerts keeps one record per alert

    def __init__(self, config: FileConfig) -> None:
        super().__init__(config)
        self.path = Path(os.path.expanduser(config.path))
        self._fd: int | None = None
        self._inode: int | None = None
        self._recent: deque[str] = deque(maxlen=config.remember or None)
        self._recent_set: set[str] = set()
        # The highest series total written per event, as many events as ids are kept.
        self._totals: OrderedDict[EventKey, int] = OrderedDict()
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await asyncio.to_thread(self._load_recent)

    def _load_recent(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - TAIL_BYTES))
                tail = f.read()
        except FileNotFoundError:
            return
        lines = tail.split(b"\n")
        if len(tail) == TAIL_BYTES:
            lines = lines[1:]  # the first is probably cut
        for line in lines:
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a torn last line from a crash mid-write
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                self._remember(record["id"])
                event = record.get("event")
                if isinstance(event, dict) and record.get("status") == "firing":
                    uid, total = event.get("uid"), event.get("total")
                    if isinstance(uid, str) and type(total) is int:
                        self._remember_total((str(record.get("cluster")), uid), total)

    def _remember(self, notification_id: str) -> None:
        if self._recent.maxlen is not None and len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(notification_id)
        self._recent_set.add(notification_id)

    def _remember_total(self, key: EventKey, total: int) -> None:
        totals = self._totals
        if totals.get(key, 0) < total:
            totals[key] = total
        totals.move_to_end(key)
        if self.config.remember and len(totals) > self.config.remember:
            totals.popitem(last=False)

    def _new_part(self, alert: Alert) -> int | None:
        """How many of a one-event alert's occurrences are not in the file yet (None: not
        a one-event firing alert, so only its id decides)."""
        if alert.status != "firing" or len(alert.occurrences) != 1:
            return None
        occ = alert.occurrences[0]
        written = self._totals.get((alert.cluster, occ.uid), 0)
        return max(0, min(occ.count, occ.total - written))

    def _open(self) -> int:
        # Reopen when logrotate moved the file away (its inode changed).
        try:
            inode = self.path.stat().st_ino
        except FileNotFoundError:
            inode = None
        if self._fd is None or inode != self._inode:
            if self._fd is not None:
                os.close(self._fd)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._inode = os.fstat(self._fd).st_ino
        return self._fd

    def _append(self, data: bytes) -> None:
        fd = self._open()
        view = memoryview(data)
        while view:  # a short write (a signal, a nearly full disk) must not tear the line
            view = view[os.write(fd, view) :]
        if self.config.fsync:
            os.fsync(fd)

    async def send(self, alert: Alert) -> DeliveryResult:
        async with self._lock:
            if alert.notification_id in self._recent_set:
                return Delivered("already in the file")
            new = self._new_part(alert)
            if new == 0:
                return Delivered("its occurrences are already in the file")
            record = alert_record(alert)
            if new is not None and new < alert.count:
                # Only the occurrences not written yet: the count and range say so.
                record["count"] = new
                record["event"]["first_total"] = record["event"]["total"] - new + 1
            line = orjson.dumps(record) + b"\n"
            try:
                await asyncio.to_thread(self._append, line)
            except OSError as exc:
                return RetryAfter(f"cannot write {self.path}: {exc.strerror}")
            self._remember(alert.notification_id)
            if new is not None:
                occ = alert.occurrences[0]
                self._remember_total((alert.cluster, occ.uid), occ.total)
            return Delivered()

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
