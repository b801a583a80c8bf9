"""A state store that lives as long as the process: for tests and `state.backend: memory`."""

from __future__ import annotations

from collections.abc import Mapping


class MemoryStore:
    def __init__(self) -> None:
        self.documents: dict[str, bytes] = {}

    async def load(self, name: str) -> bytes | None:
        return self.documents.get(name)

    async def save(self, documents: Mapping[str, bytes]) -> None:
        self.documents.update(documents)

    async def close(self) -> None:
        return None
