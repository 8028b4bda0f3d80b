"""Phase order (issue 11 item 6) and the phase-5 -> phase-6 rule (issue 10 item 9)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from phaseflow.streams.core.registry import parse_registry
from phaseflow.streams.web.phase_status import phase_status
from phaseflow.streams.web.status_summary import PhaseSummary, phase_condition
from tests.fixtures.readiness_harness import GAME_DATE, PHASE3, PHASE4, Harness

DEFAULT_TOML = (Path(__file__).parents[2] / "streams" / "pipeline.toml").read_text()
PHASE2 = ["p2_nbacom_boxscores", "p2_nbacom_gamebook_pdf", "p2_odds_game_lines"]
GOOD = {"expected_players": 450, "completed_players": 440, "total_predictions": 1760}


async def test_phase_four_does_not_fire_before_phase_three_fired_then_fires_when_it_does() -> None:
    h = Harness()
    for name in PHASE4:
        assert await h.complete(name, 4) == []  # no phase-2 or phase-3 state at all
    for name in PHASE2:
        await h.complete(name, 2)
    for name in PHASE3[:-1]:
        await h.complete(name, 3)
    fired = [(t.phase, t.reason) for t in h.publisher.triggers()]
    # Phase 3 fires phase 4, and phase 4 (held by order only) fires phase 5 in the same step.
    assert fired == [(3, "ready"), (4, "ready"), (5, "ready")]
    phase5 = h.publisher.triggers()[-1]
    assert phase5.upstream == {"2": "ready", "3": "ready", "4": "ready"}


async def test_a_held_phase_has_no_deadline_until_its_predecessor_fires() -> None:
    h = Harness()
    await h.complete(PHASE4[0], 4)
    assert await h.advance(timedelta(hours=5)) == []  # max_wait 4h does not fire it
    assert h.publisher.reruns() == []


async def test_an_independent_phase_fires_without_its_predecessor() -> None:
    toml = DEFAULT_TOML.replace(
        'name = "precompute"\n', 'name = "precompute"\nindependent = true\n'
    )
    h = Harness(parse_registry(toml, source="independent.toml"))
    for name in PHASE4:
        await h.complete(name, 4)
    [trigger] = h.publisher.triggers()
    assert trigger.phase == 5
    assert trigger.upstream == {"2": "not_fired", "3": "not_fired", "4": "ready"}


async def test_a_manual_phase_five_run_does_not_fire_phase_six_when_phase_three_failed() -> None:
    h = Harness()
    for name in PHASE2:
        await h.complete(name, 2)
    for name in PHASE3:
        await h.complete(name, 3, status="failed")
    # An operator runs phase 5 by hand (phaseflow predict); the batch succeeds.
    assert await h.complete("prediction_coordinator", 5, metadata=GOOD) == []
    assert [t.phase for t in h.publisher.triggers()] == [3]
    await h.advance(timedelta(hours=6))
    stalled = {a.subject: a.message for a in h.publisher.alerts() if a.kind == "phase_stalled"}
    assert "phase 4 has not fired" in stalled[f"{GAME_DATE.isoformat()}:phase_5"]
    assert "missing" in stalled[f"{GAME_DATE.isoformat()}:phase_3"]


async def test_status_shows_phase_five_held_by_phase_four_and_stalled() -> None:
    h = Harness()
    for name in PHASE2:
        await h.complete(name, 2)
    for name in PHASE3:
        await h.complete(name, 3, status="failed")
    await h.complete("prediction_coordinator", 5, metadata=GOOD)
    await h.advance(timedelta(hours=6))
    today = h.processor.today()
    phases = {p["phase"]: p for p in phase_status(h.registry, h.processor, GAME_DATE, today)}
    assert phases[5]["held_by_phase"] == 4
    condition = phase_condition(PhaseSummary.model_validate(phases[5]), h.clock.now())
    assert (condition.state, condition.headline) == (
        "waiting",
        "held until phase 4 fires (1/1 done); stalled",
    )
    assert phases[3]["held_by_phase"] is None  # phase 2 fired; phase 3 waits on its processors


async def test_a_trigger_after_a_timeout_upstream_says_so() -> None:
    h = Harness()
    await h.fire_upstream_of(4)
    await h.complete(PHASE4[0], 4)
    [trigger] = await h.advance(timedelta(hours=4))
    assert (trigger.phase, trigger.reason) == (5, "timeout")
    assert trigger.upstream == {"2": "ready", "3": "ready", "4": "timeout"}


async def test_status_of_a_triggered_phase_names_upstream_phases_that_were_not_ready() -> None:
    h = Harness()
    await h.fire_upstream_of(4)
    await h.complete(PHASE4[0], 4)
    await h.advance(timedelta(hours=4))  # phase 4 fires phase 5 by max_wait
    await h.complete("prediction_coordinator", 5, metadata=GOOD)
    phases = {
        p["phase"]: p for p in phase_status(h.registry, h.processor, GAME_DATE, h.processor.today())
    }
    upstream = phases[5]["trigger"]["upstream"]
    assert upstream == {"2": "ready", "3": "ready", "4": "timeout", "5": "ready"}
    condition = phase_condition(PhaseSummary.model_validate(phases[5]), h.clock.now())
    assert condition.headline == "triggered phase 6 (ready); upstream: 4 timeout"
