"""The pure part of leader election: what a candidate does with the lease it just read."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kube_event_watcher.clock import FakeClock
from kube_event_watcher.kube.lease import (
    Action,
    LeaseRecord,
    Observation,
    claim_spec,
    decide,
    micro_time,
    release_spec,
)

ME = "pod-a"
OTHER = "pod-b"


def record(
    holder: str = OTHER, renew: str = "t1", rv: str = "1", duration: float = 15
) -> LeaseRecord:
    return LeaseRecord(holder, duration, renew, "t0", 3, rv)


def test_no_lease_is_created() -> None:
    assert decide(None, None, 0.0, ME).action is Action.CREATE


def test_our_own_lease_is_renewed() -> None:
    assert decide(record(ME), None, 0.0, ME).action is Action.RENEW


def test_released_lease_is_taken_at_once() -> None:
    clock = FakeClock()
    decision = decide(record(""), None, clock.monotonic(), ME)
    assert decision.action is Action.TAKE_OVER


def test_a_held_lease_is_waited_for_a_full_duration_from_when_we_first_saw_it() -> None:
    clock = FakeClock()
    first = decide(record(), None, clock.monotonic(), ME)
    assert first.action is Action.WAIT and first.holder == OTHER
    assert first.expires_at == clock.monotonic() + 15
    clock.advance(14.9)
    second = decide(record(), first.observation, clock.monotonic(), ME)
    assert second.action is Action.WAIT
    clock.advance(0.1)
    third = decide(record(), second.observation, clock.monotonic(), ME)
    assert third.action is Action.TAKE_OVER and third.holder == OTHER


def test_a_renewal_restarts_the_wait() -> None:
    clock = FakeClock()
    seen = decide(record(renew="t1"), None, clock.monotonic(), ME).observation
    clock.advance(14)
    renewed = decide(record(renew="t2", rv="2"), seen, clock.monotonic(), ME)
    assert renewed.action is Action.WAIT
    clock.advance(14)
    assert (
        decide(record(renew="t2", rv="2"), renewed.observation, clock.monotonic(), ME).action
        is Action.WAIT
    )


def test_a_metadata_only_change_is_not_a_renewal() -> None:
    """A label edit bumps resourceVersion but says nothing about the holder being alive."""
    clock = FakeClock()
    seen = decide(record(rv="1"), None, clock.monotonic(), ME).observation
    clock.advance(15)
    assert decide(record(rv="9"), seen, clock.monotonic(), ME).action is Action.TAKE_OVER


def test_the_holders_timestamps_are_not_trusted() -> None:
    """A holder whose clock is an hour behind writes old renewTimes; we still wait from when
    we saw the change, so its lease is not taken while it renews."""
    clock = FakeClock()
    old = record(renew=micro_time(clock.now() - 3600))
    decision = decide(old, None, clock.monotonic(), ME)
    assert decision.action is Action.WAIT


def test_the_lease_duration_is_the_holders() -> None:
    """A released lease says 1 s; a standby that saw it held a second ago may take it."""
    clock = FakeClock()
    seen = decide(record(duration=1), None, clock.monotonic(), ME).observation
    clock.advance(1)
    assert decide(record(duration=1), seen, clock.monotonic(), ME).action is Action.TAKE_OVER


@given(st.lists(st.sampled_from(["renew", "tick"]), max_size=40))
def test_a_lease_renewed_more_often_than_its_duration_is_never_taken(steps: list[str]) -> None:
    clock = FakeClock()
    generation = 0
    observation: Observation | None = None
    since_renewal = 0.0
    for step in steps:
        if step == "renew" or since_renewal + 5 >= 15:
            generation += 1
            since_renewal = 0.0
        clock.advance(5)
        since_renewal += 5
        decision = decide(record(renew=f"t{generation}"), observation, clock.monotonic(), ME)
        observation = decision.observation
        assert decision.action is Action.WAIT


def test_claim_counts_transitions_and_keeps_acquire_time_on_renewal() -> None:
    clock = FakeClock()
    taken = claim_spec(record(OTHER), ME, clock.now(), 15)
    assert taken["holderIdentity"] == ME and taken["leaseTransitions"] == 4
    assert taken["acquireTime"] == taken["renewTime"] == micro_time(clock.now())
    renewed = claim_spec(record(ME), ME, clock.now() + 2, 15)
    assert renewed["leaseTransitions"] == 3 and renewed["acquireTime"] == "t0"
    assert claim_spec(None, ME, clock.now(), 12.5)["leaseDurationSeconds"] == 13


def test_release_leaves_no_holder_and_a_one_second_lease() -> None:
    spec = release_spec(record(ME), FakeClock().now())
    assert spec["holderIdentity"] == "" and spec["leaseDurationSeconds"] == 1
    assert spec["leaseTransitions"] == 3


def test_micro_time_is_rfc3339_utc_with_microseconds() -> None:
    assert micro_time(0.5) == "1970-01-01T00:00:00.500000Z"
