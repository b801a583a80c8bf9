"""A state store in a directory: one file per document, written atomically and fsynced."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from pathlib import Path

_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file, fsync it, rename over `path`, fsync the directory.

    A crash at any point leaves either the old or the new content, never a torn file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class FileStore:
    def __init__(self, directory: str) -> None:
        self.directory = Path(os.path.expanduser(directory))
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = asyncio.Lock()

    def _path(self, name: str) -> Path:
        if not _SAFE_NAME.match(name):
            raise ValueError(f"state document name {name!r} is not a safe file name")
        return self.directory / f"{name}.json"

    async def load(self, name: str) -> bytes | None:
        path = self._path(name)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    async def save(self, documents: Mapping[str, bytes]) -> None:
        async with self._lock:
            for name, data in documents.items():
                await asyncio.to_thread(atomic_write, self._path(name), data)

    async def close(self) -> None:
        return None
