"""The state store: named documents (bytes) that survive a restart."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class StateStore(Protocol):
    """Each `save` is atomic per document: after a crash a reader sees the old or the new."""

    async def load(self, name: str) -> bytes | None: ...

    async def save(self, documents: Mapping[str, bytes]) -> None: ...

    async def close(self) -> None: ...
