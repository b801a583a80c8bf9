"""Leader election against a fake Lease endpoint: creation, a 409 race between two candidates,
take-over after expiry, stepping down before a standby may take over, and release."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.kube.lease import LeaderElector, LeadershipLost, LeaseTimings
from tests.support.leases import FakeLeases, kube_http, serving

NS, NAME = "ops", "kew"
TIMINGS = LeaseTimings(lease_duration=15, renew_deadline=10, retry_period=2)

Candidate = Callable[[str], LeaderElector]


@pytest.fixture
async def leases() -> FakeLeases:
    return FakeLeases()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def candidate(leases: FakeLeases, clock: FakeClock) -> AsyncIterator[Candidate]:
    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    async with serving(leases) as server:
        https = []

        def make(identity: str) -> LeaderElector:
            http = kube_http(server)
            https.append(http)
            return LeaderElector(http, NS, NAME, identity, TIMINGS, clock, sleep=sleep)

        try:
            yield make
        finally:
            for http in https:
                await http.close()


async def test_the_first_candidate_creates_the_lease_and_the_second_stands_by(
    leases: FakeLeases, candidate: Candidate
) -> None:
    a, b = candidate("a"), candidate("b")
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    assert b.holder == "a" and leases.holder(NS, NAME) == "a"
    assert a.leading() and not b.leading()
    spec = leases.objects[NS, NAME]["spec"]
    assert spec["leaseDurationSeconds"] == 15 and spec["leaseTransitions"] == 0


@pytest.mark.parametrize("existing", [False, True], ids=["both-create", "both-take-over"])
async def test_two_candidates_racing_never_both_win(
    leases: FakeLeases, candidate: Candidate, clock: FakeClock, existing: bool
) -> None:
    a, b = candidate("a"), candidate("b")
    if existing:  # a lease whose holder died: both see it expire at the same moment
        old = candidate("dead")
        assert await old.try_acquire_or_renew()
        assert not await a.try_acquire_or_renew() and not await b.try_acquire_or_renew()
        clock.advance(15)
    leases.hold_writes()
    race = asyncio.gather(a.try_acquire_or_renew(), b.try_acquire_or_renew())
    await leases.writes_waiting(2)  # both have read the lease and are about to write
    leases.release_writes()
    results = await race
    assert sorted(results) == [False, True]
    assert leases.conflicts == 1
    winner, loser = (a, b) if results[0] else (b, a)
    assert leases.holder(NS, NAME) == winner.identity
    # The loser reads again and now waits a full lease duration for the winner.
    assert not await loser.try_acquire_or_renew() and loser.holder == winner.identity


async def test_a_standby_takes_over_a_lease_that_stops_being_renewed(
    leases: FakeLeases, candidate: Candidate, clock: FakeClock
) -> None:
    a, b = candidate("a"), candidate("b")
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock.advance(14.9)
    assert not await b.try_acquire_or_renew()
    clock.advance(0.1)
    assert await b.try_acquire_or_renew()
    assert leases.objects[NS, NAME]["spec"]["leaseTransitions"] == 1
    # The old leader, back from a 15 s pause, is past its renew deadline: it steps down
    # without writing anything.
    writes = len(leases.writes)
    with pytest.raises(LeadershipLost, match="could not renew"):
        await a.hold()
    assert len(leases.writes) == writes and leases.holder(NS, NAME) == "b"


async def test_a_leader_that_cannot_renew_stops_before_a_standby_may_take_over(
    leases: FakeLeases, candidate: Candidate, clock: FakeClock
) -> None:
    a, b = candidate("a"), candidate("b")
    start = clock.monotonic()
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()  # b saw the lease at `start`
    leases.failing = True
    with pytest.raises(LeadershipLost, match="could not renew"):
        await a.hold()
    stepped_down = clock.monotonic()
    assert stepped_down == pytest.approx(start + TIMINGS.renew_deadline)
    assert not a.leading()
    leases.failing = False
    assert not await b.try_acquire_or_renew()  # still inside a's lease: b must wait
    clock.advance(start + TIMINGS.lease_duration - clock.monotonic())
    assert await b.try_acquire_or_renew()


async def test_a_renewing_leader_keeps_the_lease_through_retries(
    leases: FakeLeases, candidate: Candidate, clock: FakeClock
) -> None:
    a, b = candidate("a"), candidate("b")
    assert await a.try_acquire_or_renew()
    holding = asyncio.create_task(a.hold())
    for _ in range(20):  # 40 s of renewals every 2 s; b never gets it
        await asyncio.sleep(0.01)
        assert not await b.try_acquire_or_renew()
    holding.cancel()
    await asyncio.gather(holding, return_exceptions=True)
    assert clock.monotonic() > TIMINGS.lease_duration
    assert set(leases.writes) == {"a"} and len(leases.writes) > 5


async def test_release_hands_the_lease_over_at_once(
    leases: FakeLeases, candidate: Candidate
) -> None:
    a, b = candidate("a"), candidate("b")
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    await a.release()
    assert leases.holder(NS, NAME) == "" and not a.leading()
    assert await b.try_acquire_or_renew()  # no waiting for the lease to run out


async def test_acquire_waits_for_the_holder_then_returns_or_gives_up_on_stop(
    leases: FakeLeases, candidate: Candidate, clock: FakeClock
) -> None:
    a, b = candidate("a"), candidate("b")
    assert await a.try_acquire_or_renew()
    assert await b.acquire(asyncio.Event())  # a never renews: b gets it after the lease
    assert 15 <= clock.monotonic() <= 17
    stop = asyncio.Event()
    stop.set()
    assert not await a.acquire(stop)


async def test_a_claim_answered_after_the_renew_deadline_is_renewed_before_leading(
    leases: FakeLeases, candidate: Candidate, clock: FakeClock
) -> None:
    """A slow API (seen: a 5 s POST on a loaded CI machine) must not make a fresh leader step
    down at once and exit: the late claim is renewed first, then the candidate leads."""
    a = candidate("a")
    leases.hold_writes()
    claiming = asyncio.create_task(a.try_acquire_or_renew())
    await leases.writes_waiting(1)
    clock.advance(TIMINGS.renew_deadline + 1)  # the write hangs past the renew deadline
    leases.release_writes()
    assert not await claiming
    assert leases.holder(NS, NAME) == "a" and not a.leading()

    stop = asyncio.Event()
    assert await a.acquire(stop)  # the next try renews the claim, quickly, and leads
    assert a.leading()
    hold = asyncio.create_task(a.hold())
    for _ in range(3):  # renewal rounds pass without stepping down
        await asyncio.sleep(0.01)
    assert not hold.done()
    hold.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await hold
