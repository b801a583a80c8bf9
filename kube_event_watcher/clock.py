"""Time as a value that is handed in, so pure stages never read the wall clock themselves."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Wall time (epoch seconds) for timestamps and monotonic time for intervals."""

    def now(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock; only the daemon's assembly and the I/O edges create one."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to; for tests and `replay`."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._wall = start
        self._mono = 0.0

    def now(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._wall += seconds
        self._mono += seconds

    def set_wall(self, epoch_seconds: float) -> None:
        self._wall = epoch_seconds
