"""A phase the validation gate rejected shows as REJECTED with the reason, not as done."""

from __future__ import annotations

from phaseflow.streams.status import format_status
from phaseflow.streams.web.phase_status import phase_status
from phaseflow.streams.web.status_page import render_status_page
from phaseflow.streams.web.status_summary import StatusSummary, build_summary, phase_condition
from tests.fixtures.readiness_harness import GAME_DATE, NOW, Harness

THIN = {"expected_players": 450, "completed_players": 200, "total_predictions": 5}
GOOD = {"expected_players": 450, "completed_players": 440, "total_predictions": 11000}


def phase5(h: Harness) -> dict[str, object]:
    phases = phase_status(h.registry, h.processor, GAME_DATE, NOW.date())
    [found] = [p for p in phases if p["phase"] == 5]
    return found


def summary_of(h: Harness) -> StatusSummary:
    body = build_summary(
        now=NOW,
        today=NOW.date(),
        dates=[GAME_DATE],
        phases_of=lambda day: phase_status(h.registry, h.processor, day, NOW.date()),
        lag=None,
        letters=None,
        alerts=None,
    )
    return StatusSummary.model_validate(body)


async def test_a_gate_rejection_is_rejected_with_the_reason_until_a_good_completion() -> None:
    h = Harness()
    await h.fire_upstream_of(5)  # phase order: phase 5 is judged once phase 4 fired
    await h.complete("prediction_coordinator", 5, metadata=THIN)
    entry = phase5(h)
    assert entry["missing"] == []  # the processor reported success ...
    assert entry["rejected"] == (
        "5 predictions < minimum 10; 44.4% of requested players covered < minimum 80% (200/450)"
    )
    summary = summary_of(h)
    [day] = summary.dates
    [phase] = [p for p in day.phases if p.phase == 5]
    condition = phase_condition(phase, NOW)
    assert condition.state == "rejected"  # ... but the gate held phase 6 back
    assert condition.headline.startswith("rejected by the validation gate: 5 predictions")
    text = format_status(summary)
    [row] = [line for line in text.splitlines() if line.startswith("5 ")]
    assert "REJECTED" in row
    assert "5 predictions < minimum 10" in row
    assert 'data-state="rejected"' in render_status_page(summary, refresh_seconds=30)

    await h.complete("prediction_coordinator", 5, metadata=GOOD)
    assert phase5(h)["rejected"] is None
    [phase] = [p for p in summary_of(h).dates[0].phases if p.phase == 5]
    assert phase_condition(phase, NOW).state == "triggered"


async def test_a_failed_rerun_after_a_rejection_leaves_it_rejected() -> None:
    # A failure never replaces a done status (docs/intake-and-reruns.md): the thin batch is
    # still the date's output, so the phase stays REJECTED until a good batch passes the gate.
    h = Harness()
    await h.fire_upstream_of(5)  # phase order: phase 5 is judged once phase 4 fired
    await h.complete("prediction_coordinator", 5, metadata=THIN)
    await h.complete("prediction_coordinator", 5, status="failed")
    assert phase5(h)["rejected"] is not None
    [phase] = [p for p in summary_of(h).dates[0].phases if p.phase == 5]
    assert phase_condition(phase, NOW).state == "rejected"
