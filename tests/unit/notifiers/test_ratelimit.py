"""Token bucket: never more than burst + rate × window sends in any window."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kube_event_watcher.notifiers.ratelimit import Rate, TokenBucket

rates = st.builds(
    Rate,
    per_minute=st.floats(min_value=0.5, max_value=6000, allow_nan=False),
    burst=st.integers(min_value=1, max_value=50),
)
gaps = st.lists(st.floats(min_value=0, max_value=30, allow_nan=False), min_size=1, max_size=300)


def _sends(rate: Rate, tries: list[float]) -> list[float]:
    bucket = TokenBucket(rate, 0.0)
    now, sent = 0.0, []
    for gap in tries:
        now += gap
        if bucket.take(now):
            sent.append(now)
    return sent


@given(rate=rates, tries=gaps, window=st.floats(min_value=0.01, max_value=600))
@settings(max_examples=300, deadline=None)
def test_no_window_holds_more_sends_than_the_limit(
    rate: Rate, tries: list[float], window: float
) -> None:
    sent = _sends(rate, tries)
    for i, start in enumerate(sent):
        inside = sum(1 for t in sent[i:] if t - start <= window)
        assert inside <= rate.burst + window * rate.per_second + 1e-6


slow_rates = st.builds(
    Rate,
    per_minute=st.floats(min_value=0.5, max_value=600, allow_nan=False),
    burst=st.integers(min_value=1, max_value=50),
)


@given(rate=slow_rates, horizon=st.floats(min_value=1, max_value=600))
@settings(max_examples=200, deadline=None)
def test_a_sender_that_waits_as_told_gets_the_full_rate(rate: Rate, horizon: float) -> None:
    bucket = TokenBucket(rate, 0.0)
    now, sent = 0.0, 0
    while True:
        now += bucket.wait(now)
        if now > horizon:
            break
        assert bucket.take(now), "wait() said a token is there"
        sent += 1
    # Everything the limit allows over the horizon, not fewer (within one token).
    assert sent >= min(rate.burst, 1) + int(horizon * rate.per_second) - 1
    assert sent <= rate.burst + horizon * rate.per_second + 1e-6


def test_dingtalk_limit_twenty_a_minute() -> None:
    bucket = TokenBucket(Rate(per_minute=20, burst=1), 0.0)
    assert bucket.take(0.0)
    assert not bucket.take(1.0)
    assert bucket.wait(1.0) == pytest.approx(2.0)
    assert bucket.take(3.0)


def test_drain_empties_the_bucket_after_a_429() -> None:
    bucket = TokenBucket(Rate(per_minute=60, burst=5), 0.0)
    bucket.drain(0.0)
    assert bucket.wait(0.0) == pytest.approx(1.0)


def test_bad_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="per_minute"):
        Rate(per_minute=0)
    with pytest.raises(ValueError, match="burst"):
        Rate(per_minute=10, burst=0)
