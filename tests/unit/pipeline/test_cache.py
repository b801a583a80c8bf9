"""The enrichment cache: TTL, LRU bound, single-flight, negative caching, counters."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.pipeline.cache import TtlCache


def make(
    clock: FakeClock, *, ttl: float = 60.0, max_entries: int = 100, negative_ttl: float = 5.0
) -> TtlCache[str, str]:
    return TtlCache(
        "pods", ttl=ttl, max_entries=max_entries, negative_ttl=negative_ttl, clock=clock
    )


class Loader:
    def __init__(self, value: str | None = "v") -> None:
        self.value = value
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> str | None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return None if self.value is None else f"{self.value}{self.calls}"


async def test_a_value_is_reused_until_its_ttl_passes() -> None:
    clock = FakeClock()
    cache = make(clock)
    load = Loader()
    assert await cache.get("a", load) == "v1"
    clock.advance(59.9)
    assert await cache.get("a", load) == "v1"
    clock.advance(0.2)
    assert await cache.get("a", load) == "v2"
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.expirations) == (1, 2, 1)
    assert load.calls == 2


async def test_not_found_is_cached_for_the_short_negative_ttl() -> None:
    clock = FakeClock()
    cache = make(clock, negative_ttl=5.0)
    load = Loader(None)
    assert await cache.get("gone", load) is None
    assert await cache.get("gone", load) is None
    assert load.calls == 1
    assert cache.stats().negative_hits == 1
    clock.advance(5.1)
    assert await cache.get("gone", load) is None
    assert load.calls == 2


async def test_zero_negative_ttl_does_not_cache_not_found() -> None:
    cache = make(FakeClock(), negative_ttl=0.0)
    load = Loader(None)
    await cache.get("gone", load)
    await cache.get("gone", load)
    assert load.calls == 2
    assert len(cache) == 0


async def test_least_recently_used_entries_go_first_at_the_bound() -> None:
    cache = make(FakeClock(), max_entries=3)
    for key in "abc":
        await cache.get(key, Loader(key))
    await cache.get("a", Loader("x"))  # touch a: b is now the oldest
    await cache.get("d", Loader("d"))
    assert len(cache) == 3
    assert cache.peek("b") == (False, None)
    assert cache.peek("a") == (True, "a1")
    assert cache.stats().evictions == 1


async def test_fifty_concurrent_gets_cause_one_lookup() -> None:
    cache = make(FakeClock())
    load = Loader()
    load.gate = asyncio.Event()
    waiters = [asyncio.create_task(cache.get("pod", load)) for _ in range(50)]
    await asyncio.sleep(0)
    assert cache.stats().in_flight == 1
    load.gate.set()
    results = await asyncio.gather(*waiters)
    assert results == ["v1"] * 50
    assert load.calls == 1
    stats = cache.stats()
    assert (stats.misses, stats.coalesced) == (1, 49)
    assert stats.hit_ratio == pytest.approx(49 / 50)


async def test_a_failed_load_reaches_every_waiter_and_is_not_cached() -> None:
    cache = make(FakeClock())
    gate = asyncio.Event()
    calls = 0

    async def failing() -> str | None:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise RuntimeError("HTTP 500")

    waiters = [asyncio.create_task(cache.get("p", failing)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert calls == 1
    assert len(cache) == 0
    assert cache.stats().load_errors == 1
    assert await cache.get("p", Loader()) == "v1"


async def test_a_caller_that_gives_up_does_not_cancel_the_load_for_others() -> None:
    cache = make(FakeClock())
    load = Loader()
    load.gate = asyncio.Event()
    impatient = asyncio.create_task(cache.get("p", load))
    patient = asyncio.create_task(cache.get("p", load))
    await asyncio.sleep(0)
    impatient.cancel()
    await asyncio.gather(impatient, return_exceptions=True)
    load.gate.set()
    assert await patient == "v1"
    # The answer was kept for the next alert, too.
    assert cache.peek("p") == (True, "v1")


async def test_close_cancels_loads_nobody_waits_for_any_more() -> None:
    cache = make(FakeClock())
    load = Loader()
    load.gate = asyncio.Event()  # never set
    waiter = asyncio.create_task(cache.get("p", load))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert cache.stats().in_flight == 1
    await cache.close()
    assert cache.stats().in_flight == 0


@given(st.lists(st.tuples(st.integers(0, 30), st.floats(0, 20)), max_size=200), st.integers(1, 10))
def test_size_never_exceeds_the_bound_and_fresh_values_are_the_last_stored(
    ops: list[tuple[int, float]], bound: int
) -> None:
    clock = FakeClock()
    cache: TtlCache[int, int] = TtlCache(
        "x", ttl=10.0, max_entries=bound, negative_ttl=1.0, clock=clock
    )
    stored: dict[int, tuple[float, int]] = {}
    for i, (key, step) in enumerate(ops):
        clock.advance(step)
        cache.put(key, i)
        stored[key] = (clock.monotonic() + 10.0, i)
        assert len(cache) <= bound
        for k, (expires, value) in stored.items():
            found, got = cache.peek(k)
            if found:
                assert got == value
                assert expires > clock.monotonic()
