"""Tiers, max_wait, durable deadlines, reruns, the validation gate, cleanup and expiry, all on
a virtual clock (no sleeping)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from phaseflow.models.codec import encode
from phaseflow.streams.core.registry import load_registry, parse_registry
from phaseflow.streams.simulation import make_completion
from tests.fixtures.readiness_harness import GAME_DATE, NOW, ORIGIN, Harness

PHASE4 = [
    "team_defense_zone_analysis",
    "player_shot_zone_analysis",
    "player_composite_factors",
    "player_daily_cache",
    "ml_feature_store",
]
MINUTE = timedelta(minutes=1)


async def test_all_five_before_the_first_tier_is_ready_not_timeout() -> None:
    h = Harness()
    await h.fire_upstream_of(4)
    for name in PHASE4:
        await h.complete(name, 4)
    [trigger] = h.publisher.triggers()
    assert (trigger.phase, trigger.reason, trigger.rule) == (5, "ready", "all_complete")
    assert await h.advance(timedelta(hours=5)) == []


async def test_four_of_five_fire_at_one_hour_with_tier_two() -> None:
    h = Harness()
    await h.fire_upstream_of(4)
    for name in PHASE4[:4]:
        await h.complete(name, 4)
    assert await h.advance(29 * MINUTE) == []
    assert await h.advance(1 * MINUTE) == []  # 30 min: tier 1 wants 5/5
    assert await h.advance(29 * MINUTE) == []
    [trigger] = await h.advance(1 * MINUTE)  # 60 min: tier 2, 4/5
    assert (trigger.reason, trigger.rule) == ("timeout", "tier_2_4_of_5")
    assert trigger.missing == ["ml_feature_store"]
    [alert] = h.publisher.alerts()
    assert alert.kind == "phase_timeout"
    [rerun] = h.publisher.reruns()
    assert (rerun.processor_name, rerun.reason, rerun.attempt) == (
        "ml_feature_store",
        "missing_at_deadline",
        1,
    )
    assert await h.advance(timedelta(hours=4)) == []  # never twice


async def test_three_of_five_fire_at_two_hours_and_one_at_max_wait() -> None:
    h = Harness()
    await h.fire_upstream_of(4)
    for name in PHASE4[:3]:
        await h.complete(name, 4)
    assert await h.advance(timedelta(hours=2) - MINUTE) == []
    [trigger] = await h.advance(MINUTE)
    assert trigger.rule == "tier_3_3_of_5"

    h = Harness()
    await h.fire_upstream_of(4)
    await h.complete(PHASE4[0], 4)
    assert await h.advance(timedelta(hours=4) - MINUTE) == []
    [trigger] = await h.advance(MINUTE)
    assert (trigger.reason, trigger.rule) == ("timeout", "max_wait")
    assert len(trigger.missing) == 4


async def test_deadline_is_measured_from_the_first_completion() -> None:
    h = Harness()
    await h.fire_upstream_of(4)
    await h.complete(PHASE4[0], 4)
    h.clock.advance(timedelta(minutes=50))
    for name in PHASE4[1:4]:
        await h.complete(name, 4)
    [trigger] = await h.advance(10 * MINUTE)  # 1 h after the first, not after the last
    assert trigger.rule == "tier_2_4_of_5"


async def test_deadline_survives_a_restart_and_fires_once() -> None:
    first = Harness()
    await first.fire_upstream_of(4)
    for name in PHASE4[:4]:
        await first.complete(name, 4)
    stored = dict(first.table)  # what the changelog would restore
    # The worker dies; a new one recovers the table and its clock has moved on.
    second = Harness(table=stored, now=NOW + timedelta(hours=3))
    fired = await second.tick()
    assert [(t.phase, t.rule) for t in fired] == [(5, "tier_2_4_of_5")]
    assert await second.tick() == []
    assert await second.advance(timedelta(hours=2)) == []


async def test_four_hours_across_spring_forward_is_four_real_hours() -> None:
    # 2026-03-08 02:00 EST -> 03:00 EDT in America/New_York.
    start = datetime(2026, 3, 8, 5, 30, tzinfo=UTC)  # 00:30 EST
    h = Harness(now=start)
    await h.fire_upstream_of(4, game_date=date(2026, 3, 7))
    await h.complete(PHASE4[0], 4, game_date=date(2026, 3, 7))
    assert await h.advance(timedelta(hours=4) - timedelta(seconds=1)) == []
    [trigger] = await h.advance(timedelta(seconds=1))
    assert trigger.rule == "max_wait"
    assert trigger.triggered_at == datetime(2026, 3, 8, 9, 30, tzinfo=UTC)  # 05:30 EDT local


async def test_four_hours_across_fall_back_is_four_real_hours() -> None:
    # 2026-11-01 02:00 EDT -> 01:00 EST.
    start = datetime(2026, 11, 1, 4, 30, tzinfo=UTC)  # 00:30 EDT
    h = Harness(now=start)
    await h.fire_upstream_of(4, game_date=date(2026, 10, 31))
    await h.complete(PHASE4[0], 4, game_date=date(2026, 10, 31))
    assert await h.advance(timedelta(hours=4) - timedelta(seconds=1)) == []
    [trigger] = await h.advance(timedelta(seconds=1))
    assert trigger.triggered_at == datetime(2026, 11, 1, 8, 30, tzinfo=UTC)  # 03:30 EST local


ALERT_ONLY = """
[rerun]
max_attempts = 2
backoff = "1m"
[[phases]]
phase = 4
name = "precompute"
processors = ["a", "b", "c"]
max_wait = "1h"
on_deadline = "alert"
[[phases]]
phase = 5
name = "predictions"
processors = ["prediction_coordinator"]
[[systems]]
system_id = "moving_average_baseline_v1"
"""


async def test_on_deadline_alert_raises_and_reruns_but_does_not_trigger() -> None:
    h = Harness(parse_registry(ALERT_ONLY, source="alert.toml"))
    await h.complete("a", 4)
    assert await h.advance(timedelta(hours=1)) == []
    [alert] = h.publisher.alerts()
    assert alert.kind == "phase_timeout"
    assert sorted(r.processor_name for r in h.publisher.reruns()) == ["b", "c"]
    assert await h.advance(timedelta(hours=1)) == []
    assert len(h.publisher.alerts()) == 1  # once
    await h.complete("b", 4)
    [trigger] = await h.complete("c", 4)
    assert (trigger.reason, trigger.rule) == ("ready", "all_complete")


async def test_failed_processor_is_rerun_with_backoff_then_circuit_opens() -> None:
    h = Harness(parse_registry(ALERT_ONLY, source="alert.toml"))
    await h.complete("a", 4, status="failed")
    assert h.publisher.reruns() == []  # backoff first
    await h.advance(MINUTE)
    assert [(r.reason, r.attempt) for r in h.publisher.reruns()] == [("failed", 1)]
    await h.complete("a", 4, status="failed")
    await h.advance(MINUTE)
    assert len(h.publisher.reruns()) == 1  # second backoff is 2 min
    await h.advance(MINUTE)
    assert [(r.reason, r.attempt) for r in h.publisher.reruns()] == [("failed", 1), ("failed", 2)]
    await h.complete("a", 4, status="failed")
    [alert] = h.publisher.alerts()
    assert alert.kind == "circuit_open"
    await h.advance(timedelta(minutes=30))
    assert len(h.publisher.reruns()) == 2


async def test_success_cancels_a_pending_rerun() -> None:
    h = Harness(parse_registry(ALERT_ONLY, source="alert.toml"))
    await h.complete("a", 4, status="failed")
    await h.complete("a", 4, status="success")
    await h.advance(timedelta(minutes=10))
    assert h.publisher.reruns() == []


GOOD = {"expected_players": 450, "completed_players": 440, "total_predictions": 11000}


async def test_validation_gate_blocks_phase_six_until_predictions_suffice() -> None:
    h = Harness()
    await h.fire_upstream_of(5)
    thin = {"expected_players": 450, "completed_players": 200, "total_predictions": 5}
    assert await h.complete("prediction_coordinator", 5, metadata=thin) == []
    [alert] = h.publisher.alerts()
    assert alert.kind == "validation_failed"
    assert "5 predictions < minimum 10" in alert.message
    assert "44.4%" in alert.message
    [rerun] = h.publisher.reruns()
    assert (rerun.phase, rerun.processor_name, rerun.reason) == (
        5,
        "prediction_coordinator",
        "validation_failed",
    )
    assert await h.advance(timedelta(hours=1)) == []  # no re-alert on ticks
    assert len(h.publisher.alerts()) == 1
    [trigger] = await h.complete("prediction_coordinator", 5, metadata=GOOD)
    assert trigger.phase == 6


async def test_cleanup_reruns_a_started_phase_whose_processors_never_reported() -> None:
    h = Harness()
    for name in ["p2_odds_game_lines", "p2_nbacom_gamebook_pdf", "p2_nbacom_boxscores"]:
        await h.complete(name, 2)
    assert [t.phase for t in h.publisher.triggers()] == [3]
    await h.advance(timedelta(minutes=14))
    assert h.publisher.reruns() == []
    await h.advance(timedelta(minutes=1))
    reruns = h.publisher.reruns()
    assert {r.reason for r in reruns} == {"cleanup"}
    assert {r.phase for r in reruns} == {3}
    assert len(reruns) == 5  # overnight: all five analytics processors expected


STORM = """
[cleanup]
interval = "10m"
storm_min_missing = 3
storm_max_missing_pct = 80
[[phases]]
phase = 2
name = "raw"
processors = ["r"]
[[phases]]
phase = 3
name = "analytics"
processors = ["a", "b", "c", "d", "e"]
[[phases]]
phase = 4
name = "precompute"
processors = ["x"]
"""


async def test_cleanup_storm_guard_alerts_instead_of_rerunning() -> None:
    h = Harness(parse_registry(STORM, source="storm.toml"))
    await h.complete("r", 2)
    await h.advance(timedelta(minutes=10))
    assert h.publisher.reruns() == []
    [alert] = h.publisher.alerts()
    assert "outage" in alert.message


async def test_state_idle_past_retention_expires() -> None:
    h = Harness()
    backfilled = GAME_DATE - timedelta(days=300)  # an old date being backfilled stays
    await h.complete("p2_odds_game_lines", 2, game_date=backfilled)
    await h.advance(timedelta(days=4))
    assert len(h.table) == 1
    await h.complete("p2_odds_game_lines", 2)
    await h.advance(timedelta(days=3, hours=1))  # backfill idle 7d1h, GAME_DATE 3d1h
    assert list(h.table) == [f"{GAME_DATE.isoformat()}:2"]
    await h.advance(timedelta(days=4))
    assert h.table == {}


def day_events() -> list[bytes]:
    registry = load_registry(None)
    events = []
    for phase in (1, 2, 3, 4, 5, 6):
        for name in sorted(registry.phase(phase).expected_processors(GAME_DATE, NOW.date())):
            metadata = GOOD if phase == 5 else None
            events.append(
                encode(make_completion(name, GAME_DATE, phase, at=NOW, metadata=metadata))
            )
    return events


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
async def test_a_day_duplicated_and_shuffled_fires_each_phase_once(seed: int) -> None:
    events = day_events() * 2
    random.Random(seed).shuffle(events)
    h = Harness()
    for raw in events:
        await h.processor.handle(raw, ORIGIN)
    await h.advance(timedelta(hours=5))
    assert sorted(t.phase for t in h.publisher.triggers()) == [3, 4, 5, 6]
    assert all(t.reason == "ready" for t in h.publisher.triggers())
