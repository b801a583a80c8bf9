"""The `file` state backend: a write-ahead journal in a directory.

`state.journal` starts with the full state (every document) and goes on with one record per
commit: the documents it replaces and the changes it appends (an incremental checkpoint
writes the ledger entries that changed, not the whole ledger). Each record carries its length
and a CRC-32 and is fsynced before `save` returns, so a commit is all or nothing: a record
torn by a crash, or damaged, ends the journal there and the commit it held never happened.
Once the records after the base outgrow the base (and `rebase_bytes`), the daemon asks for a
full commit, which writes a new journal holding only the state as it is (atomic write +
rename + directory fsync): the bytes written stay proportional to what changes.

A directory from before the journal (one `<name>.json` per document) is read as the base,
and its files are removed once the first journal is written.
"""

from __future__ import annotations

import asyncio
import os
import re
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import structlog

from kube_event_watcher.state.iothread import IoThread

log = structlog.get_logger(__name__)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
JOURNAL = "state.journal"
MAGIC = b"KEWJ1\n"
_RECORD = struct.Struct("<II")  # payload length, CRC-32 of the payload
_ENTRY = struct.Struct("<BHI")  # kind, name length, data length
_DOCUMENT, _CHANGE = 0, 1
REBASE_BYTES = 8 * 1024 * 1024


def atomic_write(path: Path, data: bytes | Iterable[bytes]) -> int:
    """Write to a temp file, fsync it, rename over `path`, fsync the directory; returns the
    size written. `data` may come in chunks, so a big file is never one buffer in memory.

    A crash at any point leaves either the old or the new content, never a torn file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    size = 0
    try:
        for chunk in (data,) if isinstance(data, bytes) else data:
            write_all(fd, chunk, size)
            size += len(chunk)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return size


def write_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of `data` at `offset` (pwrite may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        offset += written
        view = view[written:]


def encode_record(documents: Mapping[str, bytes], changes: Mapping[str, bytes]) -> bytes:
    parts: list[bytes] = []
    for kind, entries in ((_DOCUMENT, documents), (_CHANGE, changes)):
        for name, data in entries.items():
            raw = name.encode()
            parts += (_ENTRY.pack(kind, len(raw), len(data)), raw, data)
    payload = b"".join(parts)
    return _RECORD.pack(len(payload), zlib.crc32(payload)) + payload


Entry = tuple[int, str, bytes]  # kind, document name, data


def decode_records(data: bytes) -> tuple[list[list[Entry]], list[int], int]:
    """The whole records of a journal (after MAGIC), each one's size in bytes, and where the
    last one ends."""
    records: list[list[Entry]] = []
    sizes: list[int] = []
    offset = len(MAGIC)
    view = memoryview(data)
    while offset + _RECORD.size <= len(data):
        length, crc = _RECORD.unpack_from(data, offset)
        start, end = offset + _RECORD.size, offset + _RECORD.size + length
        if end > len(data) or zlib.crc32(view[start:end]) != crc:
            break  # torn by a crash mid-write (or damaged): this commit never happened
        records.append(list(_entries(data, start, end)))
        sizes.append(end - offset)
        offset = end
    return records, sizes, offset


def _entries(data: bytes, at: int, end: int) -> Iterator[Entry]:
    while at < end:
        kind, name_len, data_len = _ENTRY.unpack_from(data, at)
        at += _ENTRY.size
        name = data[at : at + name_len].decode()
        at += name_len
        yield kind, name, data[at : at + data_len]
        at += data_len


class FileStore:
    """StateStore in a directory, as a journal (see the module's docstring)."""

    incremental = True

    def __init__(
        self, directory: str, *, rebase_bytes: int = REBASE_BYTES, fsync: bool = True
    ) -> None:
        self.directory = Path(os.path.expanduser(directory))
        self.fsync = fsync  # False: a commit's record stays in the page cache (state.fsync)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.directory / JOURNAL
        self.rebase_bytes = rebase_bytes
        self._lock = asyncio.Lock()
        # Held by the worker thread for a whole write: a save cancelled while its thread
        # still writes (shutdown) must not let the next one write at the same offset.
        self._writing = threading.Lock()
        self._io = IoThread("state-journal")
        self._read = False
        self._documents: dict[str, bytes] = {}
        self._changes: dict[str, list[bytes]] = {}
        self._legacy: list[Path] = []
        self._end = 0  # where the next record goes; 0: no journal yet
        self._base_bytes = 0
        self._log_bytes = 0  # bytes of records after the base
        self._unsure = False  # the last commit failed: what it left on disk is unknown
        self.torn_bytes = 0  # cut off the journal's end when it was read
        self.written_bytes = 0  # for the metrics: what commits wrote

    # -- reading --------------------------------------------------------------------------

    def _read_all(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            self._read_legacy()
            return
        if not data.startswith(MAGIC):
            raise ValueError(f"{self.path} is not a kube-event-watcher state journal")
        records, sizes, end = decode_records(data)
        for number, (record, size) in enumerate(zip(records, sizes, strict=True)):
            for kind, name, value in record:
                if kind == _DOCUMENT:
                    self._documents[name] = value
                    self._changes.pop(name, None)
                else:
                    self._changes.setdefault(name, []).append(value)
            if number == 0:
                self._base_bytes = size
            else:
                self._log_bytes += size
        if end < len(data):
            self.torn_bytes = len(data) - end
            log.warning(
                "state journal ends in a torn record (a crash mid-commit); it is cut off",
                path=str(self.path),
                bytes=self.torn_bytes,
            )
        self._end = end if records else 0

    def _read_legacy(self) -> None:
        for path in sorted(self.directory.glob("*.json")):
            name = path.name[: -len(".json")]
            if _SAFE_NAME.match(name):
                self._documents[name] = path.read_bytes()
                self._legacy.append(path)

    async def _ensure_read(self) -> None:
        if not self._read:
            await self._io.run(self._read_all)
            self._read = True

    async def load(self, name: str) -> bytes | None:
        async with self._lock:
            await self._ensure_read()
            return self._documents.get(name)

    async def load_changes(self, name: str) -> list[bytes]:
        async with self._lock:
            await self._ensure_read()
            return list(self._changes.get(name, ()))

    # -- writing --------------------------------------------------------------------------

    def wants_full(self) -> bool:
        return (
            self._unsure
            or self._end == 0
            or self._log_bytes > max(self.rebase_bytes, self._base_bytes)
        )

    async def save(
        self,
        documents: Mapping[str, bytes],
        changes: Mapping[str, bytes] | None = None,
        *,
        full: bool = False,
        before: Callable[[], None] | None = None,
    ) -> None:
        """`before`: a blocking call whose effect must be durable before this commit can
        be (the spools' fsync), run in the journal's thread just before the write: one
        thread trip for both. If it raises, nothing is written and `save` raises that."""
        for name in (*documents, *(changes or {})):
            if not _SAFE_NAME.match(name):
                raise ValueError(f"state document name {name!r} is not a safe name")
        async with self._lock:
            await self._ensure_read()
            # What was read is the daemon's now; the store keeps only sizes and offsets.
            self._documents.clear()
            self._changes.clear()
            if full or self._end == 0:
                if changes:
                    raise ValueError("a full commit takes documents only")
                await self._io.run(self._rewrite, documents, before)
            else:
                await self._io.run(self._append, documents, changes or {}, before)

    def _rewrite(
        self, documents: Mapping[str, bytes], before: Callable[[], None] | None = None
    ) -> None:
        if before is not None:
            before()
        record = encode_record(documents, {})
        with self._writing:
            self._unsure = True
            atomic_write(self.path, MAGIC + record)
            self.written_bytes += len(MAGIC) + len(record)
            self._end = len(MAGIC) + len(record)
            self._base_bytes = len(record)
            self._log_bytes = 0
            self._unsure = False
            for path in self._legacy:
                path.unlink(missing_ok=True)
            self._legacy.clear()

    def _append(
        self,
        documents: Mapping[str, bytes],
        changes: Mapping[str, bytes],
        before: Callable[[], None] | None = None,
    ) -> None:
        if before is not None:
            before()
        record = encode_record(documents, changes)
        with self._writing:
            self._unsure = True  # until the record is known to be whole on disk
            fd = os.open(self.path, os.O_WRONLY)
            try:
                try:
                    if self.torn_bytes:  # no stale bytes of a torn record after the new one
                        os.ftruncate(fd, self._end)
                        self.torn_bytes = 0
                    write_all(fd, record, self._end)
                    if self.fsync:
                        os.fsync(fd)
                except OSError:
                    # Cut a partial record off (a reader would stop there anyway); if even
                    # that fails, `_unsure` stays and the next commit writes a new journal.
                    try:
                        os.ftruncate(fd, self._end)
                        os.fsync(fd)
                    except OSError:
                        pass
                    else:
                        self._unsure = False
                    raise
            finally:
                os.close(fd)
            self._end += len(record)
            self._log_bytes += len(record)
            self.written_bytes += len(record)
            self._unsure = False

    def describe(self) -> str:
        return str(self.directory)

    async def close(self) -> None:
        self._io.close()
