"""A rerun of phase N after it fired fires phase N + 1 again and re-arms it (issue 11 item 6)."""

from __future__ import annotations

from datetime import timedelta

from phaseflow.models.codec import encode
from phaseflow.streams.simulation import make_completion
from tests.fixtures.readiness_harness import GAME_DATE, ORIGIN, PHASE3, PHASE4, Harness

GOOD = {"expected_players": 450, "completed_players": 440, "total_predictions": 1760}
THIN = {"expected_players": 450, "completed_players": 20, "total_predictions": 5}


async def whole_day(h: Harness) -> None:
    await h.fire_upstream_of(5)
    [trigger] = await h.complete("prediction_coordinator", 5, metadata=GOOD)
    assert trigger.phase == 6
    h.publisher.sent.clear()


async def test_a_phase_four_rerun_fires_phase_five_once_after_the_last_fresh_completion() -> None:
    h = Harness()
    await whole_day(h)
    for name in PHASE4:
        h.clock.advance(timedelta(minutes=1))
        assert await h.complete(name, 4) == []
    assert await h.advance(timedelta(minutes=4)) == []  # backoff (5m) after the last one
    [refire] = await h.advance(timedelta(minutes=1))
    assert (refire.phase, refire.reason, refire.rule) == (5, "rerun", "rerun")
    assert await h.advance(timedelta(hours=1)) == []  # once
    phase5 = h.processor.state(GAME_DATE, 5)
    assert phase5 is not None
    assert (phase5.processors, phase5.trigger, phase5.round) == ({}, None, 1)
    assert [t.reason for t in phase5.previous_triggers] == ["ready"]
    # The fresh batch reports: phase 6 fires again, under a new id.
    [again] = await h.complete("prediction_coordinator", 5, metadata=GOOD)
    assert (again.phase, again.reason) == (6, "ready")
    ids = {t.trigger_id for t in h.publisher.triggers()}
    assert len(ids) == 2


async def test_a_straggler_after_a_majority_trigger_is_not_a_rerun() -> None:
    h = Harness()
    await h.fire_upstream_of(3)
    for name in [
        "player_game_summary",
        "upcoming_player_game_context",
        "team_defense_game_summary",
    ]:
        await h.complete(name, 3)
    assert [t.phase for t in h.publisher.triggers()] == [4]
    await h.complete("team_offense_game_summary", 3)  # was missing when phase 3 fired
    assert await h.advance(timedelta(hours=1)) == []


async def test_a_rerun_of_phase_five_below_the_gate_does_not_refire_phase_six() -> None:
    h = Harness()
    await whole_day(h)
    await h.complete("prediction_coordinator", 5, metadata=THIN)
    assert await h.advance(timedelta(minutes=10)) == []
    [alert] = h.publisher.alerts()
    assert alert.kind == "validation_failed"


async def test_a_phase_three_rerun_flows_through_phases_four_five_and_six() -> None:
    h = Harness()
    await whole_day(h)
    for name in PHASE3:
        await h.complete(name, 3)  # the whole phase rerun
    [four] = await h.advance(timedelta(minutes=5))
    assert (four.phase, four.reason) == (4, "rerun")
    for name in PHASE4:  # phase 4, re-armed, runs on the fresh input
        await h.complete(name, 4)
    five = [t for t in h.publisher.triggers() if t.phase == 5]
    assert [(t.reason, t.upstream["3"]) for t in five] == [("ready", "rerun")]
    [six] = await h.complete("prediction_coordinator", 5, metadata=GOOD)
    assert (six.phase, six.reason) == (6, "ready")
    assert len({t.trigger_id for t in h.publisher.triggers()}) == 3


async def test_a_re_fire_in_a_tick_is_not_undone_by_the_next_phases_stale_copy() -> None:
    h = Harness()
    await whole_day(h)
    await h.complete("prediction_coordinator", 5, status="failed")  # a rerun due in 5 min
    for name in PHASE4:
        await h.complete(name, 4)  # a re-fire of phase 5 due in 5 min too
    [refire] = await h.advance(timedelta(minutes=5))
    assert (refire.phase, refire.reason) == (5, "rerun")
    phase5 = h.processor.state(GAME_DATE, 5)
    assert phase5 is not None
    assert (phase5.trigger, phase5.round, phase5.reruns) == (None, 1, {})


async def test_a_rerun_is_recognised_by_who_counted_not_by_a_publishers_clock() -> None:
    h = Harness()
    await h.fire_upstream_of(4)
    ahead = h.clock.now() + timedelta(minutes=30)  # the phase-4 hosts' clocks run fast
    for name in PHASE4:
        event = make_completion(name, GAME_DATE, 4, at=ahead)
        await h.processor.handle(encode(event), ORIGIN)
    assert [t.phase for t in h.publisher.triggers()] == [5]
    h.clock.advance(timedelta(minutes=1))
    rerun = make_completion(PHASE4[0], GAME_DATE, 4, at=ahead + timedelta(minutes=1))
    await h.processor.handle(encode(rerun), ORIGIN)
    [refire] = await h.advance(timedelta(minutes=5))
    assert (refire.phase, refire.reason) == (5, "rerun")
