"""The client-side API budget: a token bucket with reservations."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.kube.budget import ApiBudget


def test_a_burst_is_free_then_requests_are_spaced_at_qps() -> None:
    clock = FakeClock()
    budget = ApiBudget(qps=20, burst=5, clock=clock)
    assert [budget.reserve(0.0) for _ in range(5)] == [0.0] * 5
    assert budget.reserve(0.0) == pytest.approx(0.05)
    assert budget.reserve(0.0) == pytest.approx(0.10)
    # After a quiet second the bucket is full again, never fuller than the burst.
    assert budget.reserve(10.0) == 0.0
    assert [budget.reserve(10.0) for _ in range(4)] == [0.0] * 4
    assert budget.reserve(10.0) > 0


@given(st.lists(st.floats(0, 2), min_size=1, max_size=300), st.integers(1, 20), st.floats(0.5, 50))
def test_no_more_than_burst_plus_qps_times_elapsed_requests_go(
    steps: list[float], burst: int, qps: float
) -> None:
    budget = ApiBudget(qps=qps, burst=burst, clock=FakeClock())
    now = 0.0
    granted_at: list[float] = []
    for step in steps:
        now += step
        granted_at.append(now + budget.reserve(now))
    # Whatever the arrivals, by time t at most burst + qps*t requests have been let through.
    for t in granted_at:
        assert sum(1 for g in granted_at if g <= t) <= burst + qps * t + 1e-6


async def test_acquire_sleeps_for_its_reservation_and_a_cancelled_wait_gives_it_back() -> None:
    slept: list[float] = []
    gate = asyncio.Event()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await gate.wait()

    clock = FakeClock()
    budget = ApiBudget(qps=10, burst=1, clock=clock, sleep=sleep)
    await budget.acquire()
    waiter = asyncio.create_task(budget.acquire())
    await asyncio.sleep(0)
    assert slept == [pytest.approx(0.1)]
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert budget.granted == 1
    clock.advance(0.1)
    await budget.acquire()  # the returned token and the refill make this one free
    assert len(slept) == 1


def test_a_budget_needs_positive_numbers() -> None:
    with pytest.raises(ValueError, match="qps > 0"):
        ApiBudget(qps=0, burst=1, clock=FakeClock())
