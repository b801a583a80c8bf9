"""A client-side API budget: a token bucket with reservations, as client-go's rate limiter.

`qps` tokens a second, at most `burst` saved up. Each request reserves a token; when none
is left the reservation is for a later moment and the caller sleeps until then, so
concurrent callers queue fairly instead of waking together and racing. A caller cancelled
while it waits gives its token back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from kube_event_watcher.clock import Clock


class ApiBudget:
    def __init__(
        self,
        qps: float,
        burst: int,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError(f"an API budget needs qps > 0 and burst >= 1, got {qps}/{burst}")
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock.monotonic()
        self.granted = 0
        self.delayed = 0

    def reserve(self, now: float) -> float:
        """Take a token (possibly one not there yet); seconds until it is there."""
        if now > self._updated:
            self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.qps)
            self._updated = now
        self._tokens -= 1.0
        self.granted += 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def give_back(self) -> None:
        self._tokens = min(float(self.burst), self._tokens + 1.0)
        self.granted -= 1

    async def acquire(self) -> None:
        delay = self.reserve(self._clock.monotonic())
        if delay <= 0:
            return
        self.delayed += 1
        try:
            await self._sleep(delay)
        except asyncio.CancelledError:
            self.give_back()
            raise
