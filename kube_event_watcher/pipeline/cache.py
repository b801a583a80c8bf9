"""A TTL + LRU cache with single-flight loading, for enrichment lookups.

One entry per key, kept `ttl` seconds (`negative_ttl` when the answer was "not found",
stored as None), at most `max_entries` of them (the least recently used goes first).
While a key is being loaded every other caller awaits the same load, so a storm of alerts
about one Pod costs one GET. A failed load is not cached: the next caller tries again.

The load runs in its own task and callers await it shielded: a caller that gives up (its
alert's deadline passed) does not cancel the load other callers, or the next alert, want.
Time comes from the injected clock (monotonic), so tests drive expiry without sleeping.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from kube_event_watcher.clock import Clock

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters since start. `coalesced` callers joined a load already in flight."""

    name: str
    hits: int
    misses: int
    coalesced: int
    negative_hits: int
    evictions: int
    expirations: int
    load_errors: int
    size: int
    in_flight: int

    @property
    def lookups(self) -> int:
        return self.hits + self.misses + self.coalesced

    @property
    def hit_ratio(self) -> float:
        """Share of lookups answered without a request of their own."""
        total = self.lookups
        return (self.hits + self.coalesced) / total if total else 0.0


class TtlCache(Generic[K, V]):
    """Values of one kind by key; `None` is the cached answer "does not exist"."""

    def __init__(
        self,
        name: str,
        *,
        ttl: float,
        max_entries: int,
        negative_ttl: float,
        clock: Clock,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"cache {name}: max_entries must be at least 1, got {max_entries}")
        self.name = name
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V | None]] = OrderedDict()
        self._in_flight: dict[K, asyncio.Task[V | None]] = {}
        self._hits = 0
        self._misses = 0
        self._coalesced = 0
        self._negative_hits = 0
        self._evictions = 0
        self._expirations = 0
        self._load_errors = 0

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: K) -> tuple[bool, V | None]:
        """(found, value) for a fresh entry, without loading or counting."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock.monotonic():
            return False, None
        return True, entry[1]

    def put(self, key: K, value: V | None) -> None:
        """Store an answer now (`None` = not found, kept for `negative_ttl`)."""
        ttl = self.ttl if value is not None else self.negative_ttl
        if ttl <= 0:
            self._entries.pop(key, None)
            return
        self._entries[key] = (self._clock.monotonic() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self._evictions += 1

    async def get(self, key: K, load: Callable[[], Awaitable[V | None]]) -> V | None:
        """The cached value, or the result of the one `load` in flight for `key`.

        Raises what `load` raised (to every caller waiting on that load)."""
        entry = self._entries.get(key)
        if entry is not None:
            if entry[0] > self._clock.monotonic():
                self._entries.move_to_end(key)
                self._hits += 1
                if entry[1] is None:
                    self._negative_hits += 1
                return entry[1]
            del self._entries[key]
            self._expirations += 1
        task = self._in_flight.get(key)
        if task is not None:
            self._coalesced += 1
        else:
            self._misses += 1
            task = asyncio.ensure_future(self._load(key, load))
            task.add_done_callback(_retrieve)
            self._in_flight[key] = task
        return await asyncio.shield(task)

    async def _load(self, key: K, load: Callable[[], Awaitable[V | None]]) -> V | None:
        try:
            value = await load()
        except BaseException:
            self._load_errors += 1
            raise
        finally:
            self._in_flight.pop(key, None)
        self.put(key, value)
        return value

    def stats(self) -> CacheStats:
        return CacheStats(
            name=self.name,
            hits=self._hits,
            misses=self._misses,
            coalesced=self._coalesced,
            negative_hits=self._negative_hits,
            evictions=self._evictions,
            expirations=self._expirations,
            load_errors=self._load_errors,
            size=len(self._entries),
            in_flight=len(self._in_flight),
        )

    async def close(self) -> None:
        """Cancel the loads still in flight (at shutdown) and wait for them to end."""
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._in_flight.clear()


def _retrieve(task: asyncio.Task[object]) -> None:
    # Every waiter may have given up; mark the outcome as seen so asyncio does not log
    # "exception was never retrieved" for a load nobody awaits any more.
    if not task.cancelled():
        task.exception()
