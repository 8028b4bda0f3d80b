"""A circuit breaker per prediction system (docs/predictions.md).

``closed``: calls go through; ``threshold`` consecutive failures open it. ``open``: calls are
refused (and counted) until ``cooldown`` has passed. ``half_open``: one trial call goes through;
success closes the circuit, failure opens it for another cooldown. Time comes from an injectable
clock, so every transition is tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from phaseflow.streams.core.clock import Clock
from phaseflow.streams.core.registry import SystemSpec

BreakerState = Literal["closed", "open", "half_open"]


@dataclass
class BreakerStats:
    calls: int = 0
    successes: int = 0
    failures: int = 0
    skipped: int = 0
    opened: int = 0


class CircuitBreaker:
    """Guards one system; ask :meth:`allow` before a call and report its outcome."""

    def __init__(self, name: str, *, threshold: int, cooldown: timedelta, clock: Clock) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.name = name
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._state: BreakerState = "closed"
        self._consecutive_failures = 0
        self._opened_at: datetime | None = None
        self._trial_in_flight = False
        self.stats = BreakerStats()

    @classmethod
    def from_spec(cls, spec: SystemSpec, clock: Clock) -> CircuitBreaker:
        return cls(
            spec.system_id,
            threshold=spec.breaker_threshold,
            cooldown=spec.breaker_cooldown,
            clock=clock,
        )

    @property
    def state(self) -> BreakerState:
        """The state now (an open circuit past its cooldown reads ``half_open``)."""
        if self._state == "open" and self._cooldown_over():
            return "half_open"
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive_failures

    def _cooldown_over(self) -> bool:
        return self._opened_at is not None and self._clock.now() >= self._opened_at + self.cooldown

    def allow(self) -> bool:
        """Whether a call may go ahead now; a refused call is counted as skipped."""
        if self._state == "open" and self._cooldown_over():
            self._state = "half_open"
            self._trial_in_flight = False
        if self._state == "closed" or (self._state == "half_open" and not self._trial_in_flight):
            if self._state == "half_open":
                self._trial_in_flight = True
            self.stats.calls += 1
            return True
        self.stats.skipped += 1
        return False

    def record_success(self) -> None:
        self.stats.successes += 1
        self._state = "closed"
        self._consecutive_failures = 0
        self._opened_at = None
        self._trial_in_flight = False

    def record_failure(self) -> bool:
        """Count a failure; return True when this failure opened the circuit."""
        self.stats.failures += 1
        self._consecutive_failures += 1
        if self._state == "half_open" or self._consecutive_failures >= self.threshold:
            was_open = self._state == "open"
            self._state = "open"
            self._opened_at = self._clock.now()
            self._trial_in_flight = False
            if not was_open:
                self.stats.opened += 1
                return True
        return False
