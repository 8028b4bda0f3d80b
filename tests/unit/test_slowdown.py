"""Processor slowdown: each run's duration against its processor's rolling median."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from phaseflow.agents.slowdown import DurationWindow, judge
from phaseflow.models.codec import encode
from phaseflow.models.events import Alert
from phaseflow.streams.core.registry import SlowdownSpec, load_registry
from phaseflow.streams.simulation import make_completion
from tests.fixtures.readiness_harness import ORIGIN, Harness

POLICY = SlowdownSpec(window=4, min_samples=3)
PROCESSOR = "player_daily_cache"  # phase 4, slowdown_pct 40 by default


def test_judge_compares_with_the_median_of_earlier_runs() -> None:
    window = DurationWindow(samples=(100.0, 90.0, 300.0))  # median 100
    assert judge(window, 140.0, threshold_pct=40, policy=POLICY) is None  # exactly +40 %
    slow = judge(window, 150.0, threshold_pct=40, policy=POLICY)
    assert slow is not None
    assert (slow.duration_seconds, slow.median_seconds, slow.samples) == (150.0, 100.0, 3)
    assert slow.slower_by_pct == pytest.approx(50.0)


def test_no_verdict_without_enough_history_or_with_a_zero_median() -> None:
    assert judge(DurationWindow(samples=(1.0, 1.0)), 99.0, threshold_pct=40, policy=POLICY) is None
    zeros = DurationWindow(samples=(0.0, 0.0, 0.0))
    assert judge(zeros, 5.0, threshold_pct=40, policy=POLICY) is None


def test_the_window_keeps_the_newest_samples_and_round_trips() -> None:
    window = DurationWindow()
    for seconds in range(10):
        window = window.with_sample(float(seconds), POLICY.window)
    assert window.samples == (6.0, 7.0, 8.0, 9.0)
    assert DurationWindow.from_table(window.to_table()) == window
    assert DurationWindow.from_table(None) == DurationWindow()


async def _run(
    h: Harness, seconds: float, *, day: int, status: str = "success", execution_id: str = ""
) -> None:
    event = make_completion(
        PROCESSOR,
        date(2026, 3, day),
        4,
        status=status,
        at=h.clock.now(),
        execution_id=execution_id or None,
    ).model_copy(update={"duration_seconds": seconds})
    await h.processor.handle(encode(event), ORIGIN)
    h.clock.advance(timedelta(minutes=1))


def _slowdowns(h: Harness) -> list[Alert]:
    return [a for a in h.publisher.alerts() if a.kind == "processor_slowdown"]


async def test_a_slow_run_alerts_with_both_figures() -> None:
    h = Harness()
    for day in range(1, 6):  # min_samples = 5 in the default registry
        await _run(h, 100.0, day=day)
    await _run(h, 139.0, day=6)
    assert _slowdowns(h) == []
    await _run(h, 150.0, day=7)
    [alert] = _slowdowns(h)
    assert alert.subject == f"{PROCESSOR}:2026-03-07"
    assert alert.details == {
        "processor_name": PROCESSOR,
        "duration_seconds": 150.0,
        "median_seconds": 100.0,
        "threshold_pct": 40.0,
        "samples": 6,
    }
    assert "150.0 s" in alert.message
    assert "100.0 s" in alert.message


async def test_failures_duplicates_and_missing_durations_do_not_count() -> None:
    h = Harness()
    for day in range(1, 5):
        await _run(h, 100.0, day=day, execution_id=f"run-{day}")
    await _run(h, 100.0, day=4, execution_id="run-4")  # a duplicate delivery
    await _run(h, 5.0, day=5, status="failed")  # a failed run says nothing about speed
    event = make_completion(PROCESSOR, date(2026, 3, 5), 4, at=h.clock.now())
    await h.processor.handle(encode(event), ORIGIN)  # no duration_seconds
    assert DurationWindow.from_table(h.durations[PROCESSOR]).samples == (100.0,) * 4
    await _run(h, 1000.0, day=6)  # 4 samples < min_samples: no verdict yet
    assert _slowdowns(h) == []


async def test_history_survives_a_restart_and_stays_bounded() -> None:
    registry = load_registry(None)
    h = Harness(registry)
    for day in range(1, 26):
        await _run(h, 60.0 + day % 3, day=day % 28 + 1)
    stored = DurationWindow.from_table(h.durations[PROCESSOR])
    assert len(stored.samples) == registry.slowdown.window

    restarted = Harness(registry, now=h.clock.now(), durations=h.durations)
    await _run(restarted, 200.0, day=27)
    [alert] = _slowdowns(restarted)
    assert alert.details["median_seconds"] == 61.0
