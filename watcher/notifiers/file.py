"""Alerts appended to a JSON-lines file, fsynced, and never written twice.

On start the ids of the file's last lines are read back, so an alert re-sent after a crash
(delivered, but the checkpoint not yet written) is recognised and not appended again.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from pathlib import Path

import orjson
from pydantic import Field

from watcher.notifiers.base import Delivered, DeliveryResult, Notifier, ReceiverConfig, RetryAfter
from watcher.notifiers.rendering import alert_record
from watcher.pipeline.model import Alert

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

    def _remember(self, notification_id: str) -> None:
        if self._recent.maxlen is not None and len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(notification_id)
        self._recent_set.add(notification_id)

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
        os.write(fd, data)
        if self.config.fsync:
            os.fsync(fd)

    async def send(self, alert: Alert) -> DeliveryResult:
        async with self._lock:
            if alert.notification_id in self._recent_set:
                return Delivered("already in the file")
            line = orjson.dumps(alert_record(alert)) + b"\n"
            try:
                await asyncio.to_thread(self._append, line)
            except OSError as exc:
                return RetryAfter(f"cannot write {self.path}: {exc.strerror}")
            self._remember(alert.notification_id)
            return Delivered()

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
