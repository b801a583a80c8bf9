"""Retry delays: tenacity's jittered exponential wait, asked by attempt number.

The watch and the delivery lanes run their own loops (a 410 relists at once, a platform's
Retry-After raises the floor, a healthy period resets the count), so they need the delay
arithmetic without tenacity's retry decorator around it.
"""

from __future__ import annotations

from tenacity import RetryCallState, wait_exponential_jitter


class Backoff:
    """`delay(n)`: about `initial * 2**(n-1)` plus up to `jitter` seconds, capped at `maximum`."""

    def __init__(self, initial: float, maximum: float, jitter: float) -> None:
        self._wait = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=jitter)

    def delay(self, attempt: int) -> float:
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return float(self._wait(state))
