"""The seen-ledger: per event uid, the series count already turned into occurrences.

It is what makes relists, reconnects and restarts idempotent: an event seen again with the
same count yields nothing; a grown count yields exactly the increment. One ledger per watch
scope, so a relist of that scope can drop the uids the API no longer has.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson


class SeenLedger:
    __slots__ = ("_counts",)

    def __init__(self, counts: dict[str, int] | None = None) -> None:
        self._counts: dict[str, int] = counts if counts is not None else {}

    def __len__(self) -> int:
        return len(self._counts)

    def __contains__(self, uid: object) -> bool:
        return uid in self._counts

    def seen_count(self, uid: str) -> int | None:
        return self._counts.get(uid)

    def observe(self, uid: str, count: int) -> int:
        """Record `count` for `uid`; return how many of them are new (0 when none)."""
        previous = self._counts.get(uid)
        if previous is None:
            self._counts[uid] = count
            return count
        if count > previous:
            self._counts[uid] = count
            return count - previous
        return 0

    def forget(self, uid: str) -> None:
        self._counts.pop(uid, None)

    def retain_only(self, uids: Iterable[str]) -> int:
        """After a full relist: keep only the listed uids; return how many were dropped."""
        keep = set(uids)
        gone = [uid for uid in self._counts if uid not in keep]
        for uid in gone:
            del self._counts[uid]
        return len(gone)

    def to_json(self) -> bytes:
        return orjson.dumps(self._counts)

    @classmethod
    def from_json(cls, data: bytes) -> SeenLedger:
        counts = orjson.loads(data)
        if not isinstance(counts, dict) or not all(
            isinstance(k, str) and isinstance(v, int) for k, v in counts.items()
        ):
            raise ValueError("ledger snapshot is not a mapping of uid to count")
        return cls(counts)
