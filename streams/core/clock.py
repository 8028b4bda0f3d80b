"""Injectable wall clocks, so deadline logic is testable without sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Something that tells the current wall-clock time, always time-zone aware."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real wall clock (UTC)."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to; for tests and simulations."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a time-zone aware start time")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("ManualClock needs time-zone aware times")
        self._now = moment


class AcceleratedClock:
    """A wall clock that runs ``speed`` times faster than real time from ``origin`` on.

    For soak runs and simulations (``PHASEFLOW_CLOCK_SPEED``): at 720 a game day passes in two
    minutes, so date rollover, deadlines and retention are exercised many times in one run.
    """

    def __init__(
        self,
        speed: float,
        *,
        origin: datetime | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        if origin is not None and origin.tzinfo is None:
            raise ValueError("AcceleratedClock needs a time-zone aware origin")
        self._speed = speed
        self._origin = origin or datetime.now(UTC)
        self._monotonic = monotonic
        self._started = monotonic()

    def now(self) -> datetime:
        elapsed = self._monotonic() - self._started
        return self._origin + timedelta(seconds=elapsed * self._speed)


def clock_for(speed: float) -> Clock:
    """The service's clock: the real one unless a simulation asks for a faster one."""
    return SystemClock() if speed == 1.0 else AcceleratedClock(speed)
