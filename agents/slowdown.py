"""Processor slowdown (docs/operations.md): a run's ``duration_seconds`` against that processor's
rolling median of recent successful runs.

A :class:`DurationWindow` per processor holds the newest ``window`` durations; it is kept in a
changelogged table by the readiness agent, so the history survives restarts. A run is judged
against the median of the runs *before* it, then joins the window.
"""

from __future__ import annotations

import statistics
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from phaseflow.streams.core.registry import Registry, SlowdownSpec

if TYPE_CHECKING:
    from phaseflow.agents.outbox import Outbox
    from phaseflow.models.events import PhaseCompletion


class DurationWindow(BaseModel):
    """The newest durations (seconds) of one processor's successful runs, oldest first."""

    model_config = ConfigDict(frozen=True)

    samples: tuple[float, ...] = ()

    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    def with_sample(self, seconds: float, size: int) -> DurationWindow:
        return DurationWindow(samples=(*self.samples, seconds)[-size:])

    def to_table(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_table(cls, value: bytes | str | dict[str, Any] | None) -> DurationWindow:
        if value is None:
            return cls()
        if isinstance(value, bytes | str):
            return cls.model_validate_json(value)
        return cls.model_validate(value)


@dataclass(frozen=True)
class Slowdown:
    """A run slower than its processor's median by more than the threshold."""

    duration_seconds: float
    median_seconds: float
    threshold_pct: float
    samples: int

    @property
    def slower_by_pct(self) -> float:
        return 100.0 * (self.duration_seconds - self.median_seconds) / self.median_seconds


def judge(
    window: DurationWindow, seconds: float, *, threshold_pct: float, policy: SlowdownSpec
) -> Slowdown | None:
    """A :class:`Slowdown` if ``seconds`` exceeds the window's median by over ``threshold_pct``
    %; None while fewer than ``policy.min_samples`` durations are known or the median is 0."""
    median = window.median()
    if len(window.samples) < policy.min_samples or not median:
        return None
    if seconds <= median * (1 + threshold_pct / 100):
        return None
    return Slowdown(
        duration_seconds=seconds,
        median_seconds=median,
        threshold_pct=threshold_pct,
        samples=len(window.samples),
    )


def record_duration(
    registry: Registry,
    durations: MutableMapping[str, Any],
    completion: PhaseCompletion,
    outbox: Outbox,
) -> None:
    """Compare a successful run's duration with its processor's median, then record it."""
    seconds = completion.duration_seconds
    if seconds is None or not completion.is_done:
        return
    name = completion.processor_name
    policy = registry.slowdown
    window = DurationWindow.from_table(durations.get(name))
    threshold = registry.phase(completion.phase).slowdown_pct
    slow = judge(window, seconds, threshold_pct=threshold, policy=policy)
    if slow is not None:
        outbox.alert(
            "processor_slowdown",
            f"{name}:{completion.game_date.isoformat()}",
            f"{name} took {slow.duration_seconds:.1f} s for {completion.game_date}, "
            f"{slow.slower_by_pct:.0f}% over its median of {slow.median_seconds:.1f} s "
            f"(threshold {threshold:g}%)",
            details={
                "processor_name": name,
                "duration_seconds": slow.duration_seconds,
                "median_seconds": slow.median_seconds,
                "threshold_pct": threshold,
                "samples": slow.samples,
            },
        )
    durations[name] = window.with_sample(seconds, policy.window).to_table()
