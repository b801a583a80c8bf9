"""A circuit breaker for one receiver: pure state, driven by the `now` handed in.

Closed: sends go out. After `threshold` consecutive failures it opens for `cooldown`
seconds; then one probe is let through (half-open). A probe that succeeds closes it, one that
fails opens it again with the cooldown doubled (up to `max_cooldown`).
"""

from __future__ import annotations

from typing import Literal

BreakerState = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    def __init__(self, threshold: int = 5, cooldown: float = 30.0, max_cooldown: float = 600.0):
        if threshold < 1:
            raise ValueError(f"a breaker needs threshold >= 1, got {threshold}")
        self.threshold = threshold
        self.base_cooldown = cooldown
        self.max_cooldown = max(cooldown, max_cooldown)
        self.failures = 0
        self.cooldown = cooldown
        self.opened_at: float | None = None
        self.opened_count = 0

    def state(self, now: float) -> BreakerState:
        if self.opened_at is None:
            return "closed"
        if now - self.opened_at >= self.cooldown:
            return "half-open"
        return "open"

    def wait(self, now: float) -> float:
        """Seconds until a send may go out (0.0 when closed or ready for the probe)."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown - now)

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.cooldown = self.base_cooldown

    def record_failure(self, now: float) -> None:
        self.failures += 1
        if self.opened_at is not None:
            # The half-open probe failed: stay away longer.
            self.cooldown = min(self.cooldown * 2, self.max_cooldown)
            self.opened_at = now
            self.opened_count += 1
        elif self.failures >= self.threshold:
            self.opened_at = now
            self.opened_count += 1
