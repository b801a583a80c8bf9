"""Token-bucket arithmetic for a receiver's send rate: pure, driven by the `now` handed in.

A bucket holds up to `burst` tokens and refills at `per_minute / 60` tokens a second; a send
takes one token. `wait(now)` says how long until a token is there, `take(now)` spends one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    """A platform's limit: `per_minute` sends on average, up to `burst` back to back."""

    per_minute: float
    burst: int = 1

    def __post_init__(self) -> None:
        if self.per_minute <= 0:
            raise ValueError(f"a rate needs per_minute > 0, got {self.per_minute}")
        if self.burst < 1:
            raise ValueError(f"a rate needs burst >= 1, got {self.burst}")

    @property
    def per_second(self) -> float:
        return self.per_minute / 60.0


class TokenBucket:
    """One receiver's bucket. Starts full; time must not go backwards (it is ignored if it does)."""

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self._tokens = float(rate.burst)
        self._updated = now

    def _refill(self, now: float) -> None:
        if now > self._updated:
            gained = (now - self._updated) * self.rate.per_second
            self._tokens = min(float(self.rate.burst), self._tokens + gained)
            self._updated = now

    def tokens(self, now: float) -> float:
        self._refill(now)
        return self._tokens

    def wait(self, now: float) -> float:
        """Seconds until one token is available (0.0 when one is there now)."""
        self._refill(now)
        missing = 1.0 - self._tokens
        if missing <= 1e-9:
            return 0.0
        return missing / self.rate.per_second

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False (and nothing spent) otherwise."""
        self._refill(now)
        if self._tokens + 1e-9 < 1.0:
            return False
        self._tokens = max(0.0, self._tokens - 1.0)
        return True

    def drain(self, now: float) -> None:
        """Empty the bucket: the platform said we were too fast, so start counting afresh."""
        self._refill(now)
        self._tokens = 0.0
