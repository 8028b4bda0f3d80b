"""Phase latency, end-to-end latency and SLA breaches on a virtual clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from phaseflow.agents.phase_timing import DateTiming, date_timing, sla_due_at
from phaseflow.agents.readiness_state import PhaseState
from phaseflow.models.codec import encode
from phaseflow.streams.core.registry import Registry, load_registry
from phaseflow.streams.simulation import make_completion, phase_completions
from tests.fixtures.readiness_harness import ORIGIN, Harness

NEW_YORK = ZoneInfo("America/New_York")
GATE_OK = {"expected_players": 10, "completed_players": 10, "total_predictions": 50}


def _registry() -> Registry:
    return load_registry(None)


def _timing(h: Harness, game_date: date) -> DateTiming:
    states = {
        spec.phase: state
        for spec in h.registry.phases
        if (state := h.processor.state(game_date, spec.phase)) is not None
    }
    return date_timing(h.registry, states, game_date, today=h.processor.today(), zone=NEW_YORK)


async def _complete_phase(h: Harness, game_date: date, phase: int) -> None:
    metadata = GATE_OK if phase == 5 else None
    for event in phase_completions(h.registry, game_date, phase, today=h.processor.today()):
        await h.complete(event.processor_name, phase, game_date=game_date, metadata=metadata)


# --- SLA instants ----------------------------------------------------------------------------


def test_sla_follows_the_local_offset_across_spring_forward() -> None:
    predictions = _registry().phase(5)  # sla 12:45
    assert sla_due_at(predictions, date(2026, 3, 7), NEW_YORK) == datetime(
        2026, 3, 7, 17, 45, tzinfo=UTC
    )  # EST, UTC-5
    assert sla_due_at(predictions, date(2026, 3, 8), NEW_YORK) == datetime(
        2026, 3, 8, 16, 45, tzinfo=UTC
    )  # EDT, UTC-4 from 02:00 that morning
    assert sla_due_at(predictions, date(2026, 11, 1), NEW_YORK) == datetime(
        2026, 11, 1, 17, 45, tzinfo=UTC
    )  # back to EST


def test_skipped_and_repeated_local_times_still_land_on_the_date() -> None:
    spec = _registry().phase(5).model_copy(update={"sla": time(2, 30)})
    # 02:30 does not exist on 2026-03-08 in New York: read with EST it is 03:30 EDT.
    assert sla_due_at(spec, date(2026, 3, 8), NEW_YORK) == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    spec = spec.model_copy(update={"sla": time(1, 30)})
    # 01:30 happens twice on 2026-11-01: the first one (EDT) is the deadline.
    assert sla_due_at(spec, date(2026, 11, 1), NEW_YORK) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    assert sla_due_at(_registry().phase(4), date(2026, 3, 8), NEW_YORK) is None


# --- latency ---------------------------------------------------------------------------------


async def test_phase_and_end_to_end_latency_of_a_whole_day() -> None:
    game_date = date(2026, 3, 10)
    start = datetime(2026, 3, 11, 6, 0, tzinfo=UTC)
    h = Harness(now=start)
    for phase, minutes in ((1, 20), (2, 10), (3, 15), (4, 25), (5, 30), (6, 5)):
        first, *rest = phase_completions(h.registry, game_date, phase, today=h.processor.today())
        metadata = GATE_OK if phase == 5 else None
        await h.complete(first.processor_name, phase, game_date=game_date, metadata=metadata)
        h.clock.advance(timedelta(minutes=minutes))
        for event in rest:
            await h.complete(event.processor_name, phase, game_date=game_date)
        h.clock.advance(timedelta(minutes=1))

    timing = _timing(h, game_date)
    by_phase = {p.phase: p for p in timing.phases}
    assert by_phase[1].started_at == start
    assert by_phase[1].duration_seconds == 20 * 60  # ungated: its last expected processor
    assert by_phase[2].duration_seconds == 10 * 60  # to its trigger
    assert by_phase[3].duration_seconds is not None
    assert by_phase[4].duration_seconds == 25 * 60
    assert by_phase[5].duration_seconds == 0  # one processor: its completion fires phase 6
    assert by_phase[6].duration_seconds == 0
    assert timing.completed_at == by_phase[6].completed_at
    assert timing.end_to_end_seconds == (by_phase[6].completed_at - start).total_seconds()


def test_an_incomplete_phase_has_no_duration_and_no_end_to_end() -> None:
    registry = _registry()
    at = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
    state = PhaseState(
        game_date=date(2026, 3, 10), phase=4, first_completion_at=at, last_completion_at=at
    )
    timing = date_timing(
        registry, {4: state}, date(2026, 3, 10), today=date(2026, 3, 11), zone=NEW_YORK
    )
    phase4 = next(p for p in timing.phases if p.phase == 4)
    assert (phase4.started_at, phase4.completed_at, phase4.duration_seconds) == (at, None, None)
    assert timing.started_at == at
    assert timing.end_to_end_seconds is None


# --- SLA breaches ----------------------------------------------------------------------------


async def test_one_sla_breach_per_phase_even_across_a_restart() -> None:
    game_date = date(2026, 3, 10)  # EDT: phase 5 due 16:45 UTC, phase 6 due 17:00 UTC
    h = Harness(now=datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    await _complete_phase(h, game_date, 4)  # phase 5 started, never completes
    await h.advance(timedelta(hours=4, minutes=44, seconds=59))
    assert [a for a in h.publisher.alerts() if a.kind == "sla_breach"] == []

    await h.advance(timedelta(seconds=1))
    [breach] = [a for a in h.publisher.alerts() if a.kind == "sla_breach"]
    assert breach.subject == "2026-03-10:phase_5"
    assert breach.details["due_at"] == "2026-03-10T16:45:00+00:00"
    assert breach.details["completed_at"] is None
    assert h.processor.state(game_date, 5).sla_breached_at == h.clock.now()  # type: ignore[union-attr]

    await h.advance(timedelta(minutes=15))  # phase 6 never even started: breached as well
    breaches = [a for a in h.publisher.alerts() if a.kind == "sla_breach"]
    assert [a.subject for a in breaches] == ["2026-03-10:phase_5", "2026-03-10:phase_6"]

    restarted = Harness(now=h.clock.now(), table=h.table)
    for _ in range(3):
        await restarted.advance(timedelta(minutes=30))
    assert [a for a in restarted.publisher.alerts() if a.kind == "sla_breach"] == []


async def test_dst_day_breaches_at_the_local_time() -> None:
    game_date = date(2026, 3, 8)  # clocks went forward at 02:00: 12:45 EDT is 16:45 UTC
    h = Harness(now=datetime(2026, 3, 8, 11, 0, tzinfo=UTC))
    await h.complete("nbac_schedule", 1, game_date=game_date)
    h.clock.set(datetime(2026, 3, 8, 16, 44, 59, tzinfo=UTC))
    await h.tick()
    assert [a for a in h.publisher.alerts() if a.kind == "sla_breach"] == []
    await h.advance(timedelta(seconds=1))
    assert [a.subject for a in h.publisher.alerts() if a.kind == "sla_breach"] == [
        "2026-03-08:phase_5"
    ]


async def test_phases_complete_in_time_raise_nothing_and_late_ones_do() -> None:
    game_date = date(2026, 3, 10)
    h = Harness(now=datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    await _complete_phase(h, game_date, 4)
    await _complete_phase(h, game_date, 5)  # fires phase 6 well before 16:45 UTC
    h.clock.set(datetime(2026, 3, 10, 17, 30, tzinfo=UTC))  # 30 min past phase 6's SLA
    await _complete_phase(h, game_date, 6)
    await h.advance(timedelta(minutes=1))
    [late] = [a for a in h.publisher.alerts() if a.kind == "sla_breach"]
    assert late.subject == "2026-03-10:phase_6"
    assert late.details["completed_at"] == "2026-03-10T17:30:00+00:00"


async def test_a_run_started_after_its_sla_or_long_ago_is_not_a_breach() -> None:
    # Overnight re-run of yesterday: its first completion comes after the SLA.
    h = Harness(now=datetime(2026, 3, 11, 9, 0, tzinfo=UTC))
    await _complete_phase(h, date(2026, 3, 10), 4)
    await h.advance(timedelta(hours=6))
    # A date older than the cleanup lookback (3 days) whose run started on time.
    old = date(2026, 3, 1)
    event = make_completion("nbac_schedule", old, 1, at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    await h.processor.handle(encode(event), ORIGIN)
    await h.advance(timedelta(hours=1))
    assert [a for a in h.publisher.alerts() if a.kind == "sla_breach"] == []
