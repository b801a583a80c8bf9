"""A state store that lives as long as the process: for tests and `state.backend: memory`.

Incremental like the file journal (changes kept after each document's full version), so the
tests that restart a daemon on one MemoryStore exercise the same replay of changes."""

from __future__ import annotations

from collections.abc import Mapping


class MemoryStore:
    incremental = True

    def __init__(self) -> None:
        self.documents: dict[str, bytes] = {}
        self.changes: dict[str, list[bytes]] = {}
        self.commits = 0
        self.written_bytes = 0  # nothing is written anywhere (the metric stays 0)

    async def load(self, name: str) -> bytes | None:
        return self.documents.get(name)

    async def load_changes(self, name: str) -> list[bytes]:
        return list(self.changes.get(name, ()))

    async def save(
        self,
        documents: Mapping[str, bytes],
        changes: Mapping[str, bytes] | None = None,
        *,
        full: bool = False,
    ) -> None:
        if full:
            self.documents.clear()
            self.changes.clear()
        for name, data in documents.items():
            self.documents[name] = data
            self.changes.pop(name, None)
        for name, data in (changes or {}).items():
            self.changes.setdefault(name, []).append(data)
        self.commits += 1

    def wants_full(self) -> bool:
        return sum(len(c) for c in self.changes.values()) > 1000

    def describe(self) -> str:
        return "memory (this process only)"

    async def close(self) -> None:
        return None
