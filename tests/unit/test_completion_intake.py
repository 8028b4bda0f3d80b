"""Completion intake on the virtual clock: identity is (processor, execution_id), a run's later
status replaces its earlier one, the receive time (not the publisher's clock) anchors deadlines,
and a backlog read late is not timed out by its first completion."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from phaseflow.agents.intake import DropReason, IntakeCounter
from phaseflow.agents.readiness import ReadinessProcessor
from phaseflow.agents.readiness_agent import LOG_APPEND_TIME, IntakeMetrics, record_time
from phaseflow.models.codec import encode
from phaseflow.streams.core.metrics import Metrics
from phaseflow.streams.simulation import make_completion
from tests.fixtures.readiness_harness import GAME_DATE, ORIGIN, Harness

PHASE4 = [
    "team_defense_zone_analysis",
    "player_shot_zone_analysis",
    "player_composite_factors",
    "player_daily_cache",
    "ml_feature_store",
]
PHASE3_OVERNIGHT = [
    "player_game_summary",
    "team_defense_game_summary",
    "team_offense_game_summary",
    "upcoming_player_game_context",
    "upcoming_team_game_context",
]
MINUTE = timedelta(minutes=1)


class Counts:
    """An IntakeCounter that remembers what it was told."""

    def __init__(self) -> None:
        self.dropped_reasons: list[DropReason] = []
        self.clamped_count = 0

    def dropped(self, reason: DropReason) -> None:
        self.dropped_reasons.append(reason)

    def clamped(self) -> None:
        self.clamped_count += 1


def with_counter(h: Harness, counter: IntakeCounter) -> Harness:
    """The harness's processor again, with ``counter`` passed in as the service passes it."""
    h.processor = ReadinessProcessor(
        registry=h.registry,
        table=h.table,
        publisher=h.publisher,
        clock=h.clock,
        pipeline_timezone="America/New_York",
        max_message_bytes=10_000,
        durations=h.durations,
        intake_counter=counter,
    )
    return h


async def counted_harness(*, fired_up_to: int = 0, **kw: Any) -> tuple[Harness, Counts]:
    """A harness counting drops and clamps; ``fired_up_to``: phases before it have fired
    (phase order lets only then a phase fire)."""
    counts = Counts()
    h = with_counter(Harness(**kw), counts)
    if fired_up_to:
        await h.fire_upstream_of(fired_up_to)
    return h, counts


def reruns_of(h: Harness, *processors: str) -> list[tuple[str, str]]:
    return [
        (r.processor_name, r.reason) for r in h.publisher.reruns() if r.processor_name in processors
    ]


async def send(
    h: Harness,
    processor: str,
    phase: int,
    *,
    status: str = "success",
    execution_id: str | None = None,
    at: datetime | None = None,
    record_time: datetime | None = None,
    game_date: date = GAME_DATE,
) -> list[Any]:
    event = make_completion(
        processor,
        game_date,
        phase,
        status=status,
        at=at or h.clock.now(),
        execution_id=execution_id,
    )
    return await h.processor.handle(encode(event), ORIGIN, record_time=record_time)


# --- item: identity is (processor, execution_id) --------------------------------------------


async def test_processors_sharing_a_workflow_run_id_are_all_recorded() -> None:
    h, counts = await counted_harness()
    run = "workflow-run-42"
    for name in ["p2_odds_game_lines", "p2_nbacom_gamebook_pdf"]:
        assert await send(h, name, 2, execution_id=run) == []
    [trigger] = await send(h, "p2_nbacom_boxscores", 2, execution_id=run)
    assert (trigger.phase, trigger.reason, trigger.rule) == (3, "ready", "all_complete")
    assert counts.dropped_reasons == []


async def test_a_runs_success_after_its_failure_replaces_it_and_cancels_the_rerun() -> None:
    h, counts = await counted_harness()
    run = "workflow-run-42"
    await send(h, "p2_odds_game_lines", 2, status="failed", execution_id=run)
    h.clock.advance(timedelta(seconds=30))
    await send(h, "p2_odds_game_lines", 2, status="success", execution_id=run)
    state = h.processor.state(GAME_DATE, 2)
    assert state is not None
    assert state.processors["p2_odds_game_lines"].status == "success"
    await h.advance(timedelta(hours=1))
    assert reruns_of(h, "p2_odds_game_lines") == []
    assert counts.dropped_reasons == []


async def test_an_exact_duplicate_is_dropped_and_counted() -> None:
    h, counts = await counted_harness()
    event = make_completion(
        "p2_odds_game_lines", GAME_DATE, 2, at=h.clock.now(), execution_id="run-1"
    )
    await h.processor.handle(encode(event), ORIGIN)
    await h.processor.handle(encode(event), ORIGIN)
    state = h.processor.state(GAME_DATE, 2)
    assert state is not None
    assert state.processors["p2_odds_game_lines"].attempts == 1
    assert counts.dropped_reasons == ["duplicate"]


async def test_a_failure_after_success_does_not_undo_it_and_is_counted() -> None:
    h, counts = await counted_harness()
    await send(h, "p2_odds_game_lines", 2, execution_id="run-1")
    await send(h, "p2_odds_game_lines", 2, status="failed", execution_id="run-1")
    state = h.processor.state(GAME_DATE, 2)
    assert state is not None
    assert state.processors["p2_odds_game_lines"].status == "success"
    assert counts.dropped_reasons == ["failed_after_done"]
    await h.advance(timedelta(hours=1))
    assert reruns_of(h, "p2_odds_game_lines") == []


# --- item: the publisher's clock is not trusted ---------------------------------------------


async def test_a_future_timestamp_does_not_move_the_deadline_and_is_clamped() -> None:
    h, counts = await counted_harness(fired_up_to=4)
    await send(h, PHASE4[0], 4, at=h.clock.now() + timedelta(hours=6))
    for name in PHASE4[1:4]:
        await send(h, name, 4)
    assert counts.clamped_count == 1
    record = h.processor.state(GAME_DATE, 4)
    assert record is not None
    assert record.processors[PHASE4[0]].last_completed_at == h.clock.now()
    assert await h.advance(59 * MINUTE) == []
    [trigger] = await h.advance(MINUTE)  # one hour after it was received, not seven
    assert trigger.rule == "tier_2_4_of_5"


async def test_a_timestamp_in_2099_cannot_park_the_phase_forever() -> None:
    h, counts = await counted_harness(fired_up_to=4)
    await send(h, PHASE4[0], 4, at=datetime(2099, 1, 1, tzinfo=UTC))
    state = h.processor.state(GAME_DATE, 4)
    assert state is not None
    assert state.deadline_at is not None
    assert state.deadline_at < h.clock.now() + timedelta(days=1)
    assert counts.clamped_count == 1
    [trigger] = await h.advance(timedelta(hours=4))
    assert (trigger.reason, trigger.rule) == ("timeout", "max_wait")


async def test_a_timestamp_within_the_tolerance_is_kept() -> None:
    h, counts = await counted_harness()
    ahead = h.clock.now() + timedelta(minutes=4)
    await send(h, PHASE4[0], 4, at=ahead)
    state = h.processor.state(GAME_DATE, 4)
    assert state is not None
    assert state.processors[PHASE4[0]].last_completed_at == ahead
    assert state.first_completion_at == ahead  # latency and SLA keep the publisher's stamp
    assert state.first_received_at == h.clock.now()  # deadlines count from here
    assert counts.clamped_count == 0


async def test_a_future_failure_does_not_hide_later_successes() -> None:
    h, _ = await counted_harness(fired_up_to=4)
    await send(h, PHASE4[0], 4, status="failed", at=h.clock.now() + timedelta(hours=2))
    h.clock.advance(10 * MINUTE)
    for name in PHASE4:
        fired = await send(h, name, 4)
    assert [(t.phase, t.rule) for t in fired] == [(5, "all_complete")]
    await h.advance(timedelta(hours=3))
    assert reruns_of(h, *PHASE4) == []


async def test_statuses_follow_receive_order_not_timestamps() -> None:
    h, _ = await counted_harness()
    await send(h, PHASE4[0], 4, status="failed", at=h.clock.now())
    # A later run's success stamped an hour earlier (a publisher clock behind) still counts.
    await send(h, PHASE4[0], 4, at=h.clock.now() - timedelta(hours=1))
    state = h.processor.state(GAME_DATE, 4)
    assert state is not None
    assert state.processors[PHASE4[0]].status == "success"


async def test_the_record_time_anchors_the_deadline() -> None:
    h, _ = await counted_harness(fired_up_to=4)
    received = h.clock.now() - 30 * MINUTE
    await send(h, PHASE4[0], 4, at=h.clock.now() + timedelta(hours=3), record_time=received)
    for name in PHASE4[1:4]:
        await send(h, name, 4)
    state = h.processor.state(GAME_DATE, 4)
    assert state is not None
    assert state.first_received_at == received
    [trigger] = await h.advance(30 * MINUTE)  # one hour after the broker took it
    assert trigger.rule == "tier_2_4_of_5"


async def test_a_record_time_ahead_of_the_worker_clock_is_bounded_by_it() -> None:
    h, _ = await counted_harness()
    await send(h, PHASE4[0], 4, record_time=h.clock.now() + timedelta(hours=5))
    state = h.processor.state(GAME_DATE, 4)
    assert state is not None
    assert state.first_received_at == h.clock.now()


# --- item: catching up after an outage ------------------------------------------------------


async def test_a_backlog_read_late_completes_the_phase_without_a_false_timeout() -> None:
    # The five phase-4 processors finished 09:00-09:08; the worker reads them at 14:00.
    nine = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
    h, _ = await counted_harness(fired_up_to=4, now=nine + timedelta(hours=5))
    fired = []
    for minute, name in zip((0, 2, 4, 6, 8), PHASE4, strict=True):
        at = nine + minute * MINUTE
        fired += await send(h, name, 4, at=at, record_time=at)
    fired += await h.tick()
    assert [(t.phase, t.reason, t.rule) for t in fired] == [(5, "ready", "all_complete")]
    assert h.publisher.alerts() == []
    assert h.publisher.reruns() == []


async def test_a_backlog_missing_one_times_out_on_the_tick_with_only_that_one() -> None:
    nine = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
    h, _ = await counted_harness(fired_up_to=4, now=nine + timedelta(hours=5))
    for minute, name in zip((0, 2, 4, 6), PHASE4[:4], strict=True):
        at = nine + minute * MINUTE
        assert await send(h, name, 4, at=at, record_time=at) == []
    [trigger] = await h.tick()
    assert (trigger.reason, trigger.rule, trigger.missing) == (
        "timeout",
        "tier_2_4_of_5",
        ["ml_feature_store"],
    )
    [alert] = h.publisher.alerts()
    assert alert.details["missing"] == ["ml_feature_store"]
    assert [r.processor_name for r in h.publisher.reruns()] == ["ml_feature_store"]


# --- what the service wires: /metrics and the record timestamp -------------------------------


async def test_dropped_and_clamped_completions_show_on_metrics() -> None:
    metrics = Metrics()
    h = with_counter(Harness(), IntakeMetrics(metrics))
    event = make_completion("p2_odds_game_lines", GAME_DATE, 2, at=h.clock.now(), execution_id="r")
    await h.processor.handle(encode(event), ORIGIN)
    await h.processor.handle(encode(event), ORIGIN)
    await send(h, "p2_odds_game_lines", 2, status="failed", execution_id="r")
    await send(h, PHASE4[0], 4, at=datetime(2099, 1, 1, tzinfo=UTC))
    text = metrics.render().decode()
    assert 'phaseflow_completions_dropped_total{reason="duplicate"} 1.0' in text
    assert 'phaseflow_completions_dropped_total{reason="failed_after_done"} 1.0' in text
    assert "phaseflow_completion_timestamps_clamped_total 1.0" in text


def test_the_brokers_append_time_becomes_the_receive_time() -> None:
    appended = record_time(1_773_219_600.5, LOG_APPEND_TIME)
    assert appended == datetime(2026, 3, 11, 9, 0, 0, 500_000, tzinfo=UTC)
    assert record_time(1_773_219_600.5, 0) is None  # CreateTime: the producer's clock
    assert record_time(None, LOG_APPEND_TIME) is None
    assert record_time(-1.0, LOG_APPEND_TIME) is None
