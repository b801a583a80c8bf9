"""The state store: named documents (bytes) that survive a restart, committed together.

A commit (`save`) is atomic as a whole: after a crash a reader sees every document of it, or
none (the previous commit). An incremental store also takes *changes*: opaque records that
are kept in order after their document's last full version, so a commit costs what changed,
not the whole state (the seen-ledger of a busy cluster is ~27 MB in full). Stores that
cannot keep changes (`incremental` False) are always given full documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class StateStore(Protocol):
    @property
    def incremental(self) -> bool:
        """Whether `save` takes `changes` (else every commit passes full documents)."""
        ...

    async def load(self, name: str) -> bytes | None:
        """The document's last full version."""
        ...

    async def load_changes(self, name: str) -> list[bytes]:
        """The changes committed after `load(name)`'s version, oldest first."""
        ...

    async def save(
        self,
        documents: Mapping[str, bytes],
        changes: Mapping[str, bytes] | None = None,
        *,
        full: bool = False,
    ) -> None:
        """Commit full `documents` and `changes` to other documents, atomically.

        With `full`, `documents` is the whole state: anything not in it is dropped, and an
        incremental store may start its log afresh from it."""
        ...

    def wants_full(self) -> bool:
        """True when the next commit should be `full` (the change log outgrew the state, or
        the last commit failed and its outcome is unknown)."""
        ...

    def describe(self) -> str:
        """Where the state lives, for logs (a directory, a ConfigMap)."""
        ...

    async def close(self) -> None: ...


class WholeDocuments:
    """For stores that keep only full documents: no changes, never asks for `full`."""

    incremental = False

    async def load_changes(self, name: str) -> list[bytes]:
        return []

    def wants_full(self) -> bool:
        return False
