"""No silent stalls (issue 11, item 2): stall alerts, expiry alerts, re-evaluation on a registry
change, orphan state of undeclared phases (item 7). Virtual clock, default registry."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from phaseflow.models.codec import encode
from phaseflow.models.events import Alert
from phaseflow.streams.core.registry import Registry, RegistryError, parse_registry
from tests.fixtures.readiness_harness import ORIGIN, Harness

DEFAULT_TOML = (Path(__file__).parents[2] / "streams" / "pipeline.toml").read_text()
STUCK_DATE = date(2026, 3, 10)
RECENT_DATE = date(2026, 3, 14)
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)  # five days later: past lookback_days = 3
PHASE2_REPORTING = ["p2_odds_game_lines", "p2_nbacom_gamebook_pdf"]  # p2_nbacom_boxscores never


def registry(toml: str = DEFAULT_TOML) -> Registry:
    return parse_registry(toml, source="test.toml")


def stalls(h: Harness) -> list[Alert]:
    return [a for a in h.publisher.alerts() if a.kind == "phase_stalled"]


async def stuck_phase2(h: Harness, game_date: date = STUCK_DATE) -> None:
    for name in PHASE2_REPORTING:
        await h.complete(name, 2, game_date=game_date)


async def test_a_stuck_phase_older_than_lookback_raises_one_stall_alert() -> None:
    h = Harness(now=NOW)
    await stuck_phase2(h)
    await h.advance(timedelta(hours=5, minutes=59))
    assert stalls(h) == []
    await h.advance(timedelta(minutes=1))  # stall_after = 6h (registry default)
    [alert] = stalls(h)
    assert alert.subject == "2026-03-10:phase_2"
    assert "missing p2_nbacom_boxscores" in alert.message
    assert "phaseflow rerun --date 2026-03-10 --phase 2" in alert.message
    [rerun] = h.publisher.reruns()  # and the missing processor is asked to run again, once
    assert (rerun.processor_name, rerun.reason) == ("p2_nbacom_boxscores", "missing_at_deadline")
    for _ in range(24):
        await h.advance(timedelta(hours=1))
    assert len(stalls(h)) == 1  # once per (date, phase)
    assert len(h.publisher.reruns()) == 1
    assert h.publisher.triggers() == []


async def test_stall_after_per_phase_overrides_the_registry_default() -> None:
    toml = DEFAULT_TOML.replace('name = "raw"\n', 'name = "raw"\nstall_after = "1h"\n')
    h = Harness(registry(toml), now=NOW)
    await stuck_phase2(h)
    await h.advance(timedelta(minutes=59))
    assert stalls(h) == []
    await h.advance(timedelta(minutes=1))
    assert len(stalls(h)) == 1


async def test_phase_five_and_six_without_deadlines_get_stall_alerts() -> None:
    h = Harness(now=NOW)
    await h.fire_upstream_of(5, game_date=STUCK_DATE)  # phase 5 started, coordinator silent
    await h.advance(timedelta(hours=6))
    [alert] = stalls(h)
    assert alert.subject == "2026-03-10:phase_5"
    assert "missing prediction_coordinator" in alert.message


async def test_expiry_of_a_never_fired_phase_is_a_critical_alert_not_an_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness(now=NOW)
    await stuck_phase2(h)
    with caplog.at_level(logging.INFO, logger="phaseflow.agents.retention"):
        for _ in range(8 * 24):
            await h.advance(timedelta(hours=1))
    assert h.table == {}
    first_stall, expired = stalls(h)
    assert first_stall.severity == "warning"
    assert expired.severity == "critical"
    assert "expired (idle for over 7 days) without finishing" in expired.message
    assert "missing p2_nbacom_boxscores" in expired.message
    assert "expired unfinished" in caplog.text


async def test_a_registry_change_re_evaluates_every_held_date_at_start() -> None:
    first = Harness(now=NOW)
    await stuck_phase2(first)  # five days old: past lookback_days
    await stuck_phase2(first, game_date=RECENT_DATE)  # one day old
    stored = dict(first.table)  # what the changelog restores
    optional = DEFAULT_TOML.replace(
        'optional = ["p2_bigdataball_pbp", "p2_odds_player_props"]',
        'optional = ["p2_bigdataball_pbp", "p2_odds_player_props", "p2_nbacom_boxscores"]',
    )
    restarted = Harness(registry(optional), table=stored, now=NOW + timedelta(minutes=1))
    fired = await restarted.tick()
    assert sorted((t.game_date, t.phase) for t in fired) == [
        (STUCK_DATE, 3),
        (RECENT_DATE, 3),
    ]
    assert await restarted.advance(timedelta(minutes=1)) == []  # evaluated once, not per tick


async def test_an_unchanged_registry_does_not_re_evaluate_at_start() -> None:
    first = Harness(now=NOW)
    await stuck_phase2(first)
    restarted = Harness(table=dict(first.table), now=NOW + timedelta(minutes=1))
    assert restarted.processor.due_ticks() == []


# Phase 6 dropped, and with it phase 5's validation gate (a gate needs a declared successor).
NO_PHASE_SIX = (
    DEFAULT_TOML[: DEFAULT_TOML.index("[[phases]]\nphase = 6")]
    + DEFAULT_TOML[DEFAULT_TOML.index("[[systems]]") :]
).replace("validation = { min_predictions = 10, min_completion_pct = 80 }", "")


async def test_orphan_state_of_an_undeclared_phase_is_reported_bounded_and_expires() -> None:
    first = Harness(now=NOW)
    await first.complete("phase6_export", 6, game_date=RECENT_DATE)  # in lookback_days
    restarted = Harness(registry(NO_PHASE_SIX), table=dict(first.table), now=NOW)
    ticks = 0
    for _ in range(3600):  # an hour of timer runs, one a second
        restarted.clock.advance(timedelta(seconds=1))
        due = restarted.processor.due_ticks()
        ticks += len(due)
        for tick in due:
            await restarted.processor.handle_tick(encode(tick), ORIGIN)
    assert ticks <= 1
    [alert] = restarted.publisher.alerts()
    assert (alert.kind, alert.subject) == ("orphan_state", "2026-03-14:phase_6")
    assert "no longer declares" in alert.message
    assert "2026-03-14:6" in restarted.table
    await restarted.advance(timedelta(days=7))
    assert restarted.table == {}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'stall_after = "6h"',
            'stall_after = "0s"',
            "test.toml: stall_after: must be longer than 0s",
        ),
        (
            'name = "raw"\n',
            'name = "raw"\nstall_after = "0s"\n',
            "test.toml: phases[1].stall_after: must be longer than 0s",
        ),
    ],
)
def test_a_zero_stall_after_is_refused_at_start(old: str, new: str, message: str) -> None:
    with pytest.raises(RegistryError) as error:
        registry(DEFAULT_TOML.replace(old, new))
    assert str(error.value) == message


def test_the_default_registry_stalls_after_six_hours_everywhere() -> None:
    default = registry()
    assert {default.stall_after_for(spec.phase) for spec in default.phases} == {timedelta(hours=6)}
