"""The coordinator's decisions on plain dicts, a list publisher and a manual clock."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from decimal import Decimal

import pytest

from phaseflow.agents.predictions.batch_state import (
    BatchAlreadyRunningError,
    BatchNotRunningError,
    CommandResult,
)
from phaseflow.agents.predictions.coordinator import DEFAULT_BATCH_DEADLINE, Coordinator
from phaseflow.agents.predictions.messages import PlayerDone, decode_progress, make_command
from phaseflow.agents.predictions.source import SourceRow, build_requests
from phaseflow.models.codec import decode, encode
from phaseflow.models.events import Alert, DeadLetter, PhaseCompletion, PredictionRequest
from phaseflow.streams.core.clock import ManualClock
from phaseflow.streams.core.envelope import Origin
from phaseflow.streams.core.registry import Registry, load_registry
from phaseflow.streams.core.topics import TopicName
from tests.fixtures.prediction_fakes import DAY, T0, FakeSlate, ListPublisher, slate


class Harness:
    def __init__(
        self,
        players: int = 20,
        *,
        rows: list[SourceRow] | None = None,
        registry: Registry | None = None,
        batch_deadline: timedelta = DEFAULT_BATCH_DEADLINE,
    ) -> None:
        self.clock = ManualClock(T0)
        self.batches: dict[str, object] = {}
        self.markers: dict[str, object] = {}
        self.publisher = ListPublisher()
        self.source = FakeSlate(slate(players) if rows is None else rows)
        self.coordinator = Coordinator(
            registry=registry or load_registry(None),
            batches=self.batches,
            players=self.markers,
            publisher=self.publisher,
            source=self.source,
            clock=self.clock,
            batch_deadline=batch_deadline,
        )

    async def start(
        self, batch_id: str | None = None, command: str | None = None, day: date = DAY
    ) -> str:
        return (await self.start_result(batch_id, command, day)).status

    async def start_result(
        self, batch_id: str | None = None, command: str | None = None, day: date = DAY
    ) -> CommandResult:
        cmd = make_command(
            "start", day, issued_at=self.clock.now(), batch_id=batch_id, command=command
        )
        result = await self.coordinator.apply(cmd)
        assert result is not None
        return result

    async def done(
        self, player: str, batch_id: str = "2026-01-15-r1", n: int = 4, day: date = DAY
    ) -> None:
        record = PlayerDone(
            game_date=day,
            batch_id=batch_id,
            player_lookup=player,
            request_id=f"r-{player}",
            predictions=n,
            done_at=self.clock.now(),
        )
        await self.coordinator.apply(record)

    async def check(self) -> str:
        result = await self.coordinator.apply(
            make_command("check", DAY, issued_at=self.clock.now(), source="timer")
        )
        assert result is not None
        return result.status

    def requests(self) -> list[PredictionRequest]:
        return [
            decode(PredictionRequest, v)
            for _, v in self.publisher.on(TopicName.PREDICTION_REQUESTS)
        ]

    def completions(self) -> list[PhaseCompletion]:
        return [
            decode(PhaseCompletion, v) for _, v in self.publisher.on(TopicName.PHASE_COMPLETIONS)
        ]


class Loopback(ListPublisher):
    """Applies what goes to the progress topic at once, as the agent would."""

    def __init__(self, harness: Harness) -> None:
        super().__init__()
        self.harness = harness
        self.sent = harness.publisher.sent  # one record of everything sent

    async def send(self, topic: TopicName, key: str, value: bytes) -> None:
        await super().send(topic, key, value)
        if topic == TopicName.PREDICTION_PROGRESS:
            await self.harness.coordinator.apply(decode_progress(value))


def test_build_requests_one_per_player_distinct_exact_lines() -> None:
    rows = [
        SourceRow("b", "G1", Decimal("25.5")),
        SourceRow("b", "G1", Decimal("25.50")),
        SourceRow("b", "G1", Decimal("24.5")),
        SourceRow("b", "G1", Decimal("26")),
        SourceRow("a", "G2", None),
    ]
    requests = build_requests(rows, game_date=DAY, batch_id="B", requested_at=T0)
    assert [r.player_lookup for r in requests] == ["a", "b"]
    assert requests[0].line_values == []
    assert [str(v) for v in requests[1].line_values] == ["24.5", "25.5", "26.0"]
    assert requests[1].key == "2026-01-15:b"
    again = build_requests(list(reversed(rows)), game_date=DAY, batch_id="B", requested_at=T0)
    assert [r.request_id for r in again] == [r.request_id for r in requests]


async def test_start_publishes_one_request_per_player_under_the_default_batch_id() -> None:
    h = Harness(players=20)
    assert await h.start() == "started"
    requests = h.requests()
    assert len(requests) == 20
    assert {r.batch_id for r in requests} == {"2026-01-15-r1"}
    assert all(r.line_values == [Decimal("20.5"), Decimal("21.5")] for r in requests)
    keys = [k for k, _ in h.publisher.on(TopicName.PREDICTION_REQUESTS)]
    assert keys[0] == "2026-01-15:player000"


async def test_a_second_start_while_running_does_not_duplicate_work() -> None:
    h = Harness()
    await h.start()
    assert await h.start() == "already_running"
    assert await h.start(batch_id="other") == "already_running"
    assert len(h.requests()) == 20
    assert h.source.reads == 1
    with pytest.raises(BatchAlreadyRunningError, match="already running"):
        await h.coordinator.start(DAY, None)


async def test_a_redelivered_start_command_resends_only_what_may_be_missing() -> None:
    h = Harness(players=3)
    await h.start(command="cmd-1")
    first = [r.request_id for r in h.requests()]
    # Every request was acknowledged: a redelivery (a re-read trigger) sends nothing more.
    assert await h.start(command="cmd-1") == "duplicate"
    assert [r.request_id for r in h.requests()] == first
    # As if the worker had died while publishing: the redelivery sends them all again.
    state = h.coordinator.date_state(DAY)
    assert state is not None
    assert state.current is not None
    h.coordinator._save(
        state.model_copy(
            update={"current": state.current.model_copy(update={"requests_sent": False})}
        )
    )
    assert await h.start(command="cmd-1") == "resent"
    assert [r.request_id for r in h.requests()] == first * 2


async def test_done_when_every_player_reported_exactly_one_completion() -> None:
    h = Harness(players=5)
    await h.start()
    for i in range(5):
        await h.done(f"player{i:03d}")
        await h.done(f"player{i:03d}")  # a redelivered request, reported twice
    await h.done("player000", batch_id="2026-01-15-r0")  # another batch: ignored
    [completion] = h.completions()
    assert completion.processor_name == "prediction_coordinator"
    assert completion.phase == 5
    assert completion.status == "success"
    assert completion.metadata["expected_players"] == 5
    assert completion.metadata["completed_players"] == 5
    assert completion.metadata["total_predictions"] == 20
    assert completion.record_count == 20
    assert h.coordinator.stats.done_ignored == 6


async def test_stall_completes_at_min_coverage_after_the_stall_timeout() -> None:
    h = Harness(players=100)  # registry: min_coverage_pct 95, stall_timeout 15m
    await h.start()
    for i in range(95):
        await h.done(f"player{i:03d}")
    h.clock.advance(timedelta(minutes=14, seconds=59))
    assert h.coordinator.due_checks() == []
    assert await h.check() == "checked"
    assert h.completions() == []
    h.clock.advance(timedelta(seconds=1))
    assert h.coordinator.due_checks() == [DAY]
    assert await h.check() == "completed"
    [completion] = h.completions()
    assert completion.status == "partial"
    assert completion.metadata["completed_players"] == 95
    assert completion.metadata["completion_reason"] == "stalled"
    await h.check()
    await h.done("player099")
    assert len(h.completions()) == 1


async def test_stall_below_coverage_alerts_once_and_keeps_waiting() -> None:
    h = Harness(players=100)
    await h.start()
    for i in range(50):
        await h.done(f"player{i:03d}")
    h.clock.advance(timedelta(minutes=20))
    assert await h.check() == "checked"
    assert h.coordinator.due_checks() == []  # alerted; nothing new to look at
    await h.check()
    alerts = [decode(Alert, v) for _, v in h.publisher.on(TopicName.ALERTS)]
    assert [a.kind for a in alerts] == ["phase_timeout"]
    assert h.completions() == []
    for i in range(50, 96):  # progress resumes, then stalls again above the minimum
        await h.done(f"player{i:03d}")
    h.clock.advance(timedelta(minutes=15))
    assert await h.check() == "completed"
    assert h.completions()[0].metadata["completed_players"] == 96


async def test_manual_complete_and_the_next_run_gets_a_new_batch_id() -> None:
    h = Harness(players=4)
    await h.start()
    await h.done("player000")
    result = await h.coordinator.apply(make_command("complete", DAY, issued_at=T0))
    assert result is not None
    assert result.status == "completed"
    assert h.completions()[0].metadata["completed_players"] == 1
    assert await h.start(batch_id="2026-01-15-r1") == "already_complete"
    assert await h.start() == "started"
    assert {r.batch_id for r in h.requests()} == {"2026-01-15-r1", "2026-01-15-r2"}


async def test_complete_without_a_batch_is_refused() -> None:
    h = Harness()
    with pytest.raises(BatchNotRunningError):
        await h.coordinator.complete(DAY, None)


async def test_source_failure_publishes_a_failed_completion() -> None:
    h = Harness()
    h.source.fail = True
    assert await h.start() == "failed"
    [completion] = h.completions()
    assert completion.status == "failed"
    assert completion.error_type == "source_unavailable"
    h.source.fail = False
    assert await h.start() == "started"


async def test_an_empty_slate_fails_at_once_with_the_reason() -> None:
    h = Harness(players=0)
    result = await h.start_result()
    assert result.status == "failed"
    assert "no players on the slate of 2026-01-15" in result.message
    [completion] = h.completions()
    assert completion.status == "failed"
    assert completion.error_type == "no_slate"
    assert completion.error_message == result.message
    assert completion.metadata["expected_players"] == 0
    assert h.requests() == []
    # Nothing runs: a later start (the readiness agent's rerun) is a new batch.
    h.source.rows = slate(2)
    assert await h.start() == "started"
    assert {r.batch_id for r in h.requests()} == {"2026-01-15-r2"}


async def test_a_slate_without_any_prop_line_fails_without_sending_requests() -> None:
    h = Harness(rows=[SourceRow(f"player{i:03d}", "G1", None) for i in range(450)])
    result = await h.start_result()
    assert result.status == "failed"
    assert result.expected_players == 450
    [completion] = h.completions()
    assert completion.status == "failed"
    assert completion.error_type == "no_lines"
    assert completion.error_message is not None
    assert "none of the 450 players" in completion.error_message
    assert h.requests() == []
    state = h.coordinator.date_state(DAY)
    assert state is not None
    assert state.running is None


async def test_no_enabled_prediction_system_fails_the_batch_at_start() -> None:
    default = load_registry(None)
    registry = default.model_copy(
        update={"systems": tuple(s.model_copy(update={"enabled": False}) for s in default.systems)}
    )
    h = Harness(players=3, registry=registry)
    assert await h.start() == "failed"
    [completion] = h.completions()
    assert (completion.status, completion.error_type) == ("failed", "no_systems")
    assert h.requests() == []


async def test_a_batch_whose_players_all_produced_nothing_ends_failed() -> None:
    h = Harness(players=3)
    await h.start()
    for i in range(3):
        await h.done(f"player{i:03d}", n=0)
    [completion] = h.completions()
    assert completion.status == "failed"
    assert completion.error_type == "no_predictions"
    assert completion.metadata["completed_players"] == 3
    assert completion.record_count == 0
    state = h.coordinator.date_state(DAY)
    assert state is not None
    assert state.current is not None
    assert state.current.status == "failed"


async def test_an_explicit_batch_id_reused_on_another_date_counts_its_players() -> None:
    h = Harness(players=3)
    other = DAY + timedelta(days=1)
    assert await h.start(batch_id="nightly") == "started"
    assert await h.start(batch_id="nightly", day=other) == "started"
    for i in range(3):
        await h.done(f"player{i:03d}", batch_id="nightly")
        await h.done(f"player{i:03d}", batch_id="nightly", day=other)
    assert sorted((c.game_date, c.status) for c in h.completions()) == [
        (DAY, "success"),
        (other, "success"),
    ]
    assert h.coordinator.stats.done_counted == 6


async def test_a_batch_stalled_below_coverage_fails_at_its_deadline_then_may_start_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness(players=100, batch_deadline=timedelta(hours=2))
    await h.start()
    for i in range(50):
        await h.done(f"player{i:03d}")
    h.clock.advance(timedelta(minutes=20))
    assert await h.check() == "checked"  # the stall alert
    with caplog.at_level(logging.WARNING, logger="phaseflow.agents.predictions.coordinator"):
        refused = await h.start_result()
    assert refused.status == "already_running"
    assert "2026-01-15T20:00:00+00:00 at the latest" in refused.message
    assert "already_running" in caplog.text
    h.clock.advance(timedelta(minutes=99))
    assert h.coordinator.due_checks() == []
    h.clock.advance(timedelta(minutes=1))  # two hours after the start
    assert h.coordinator.due_checks() == [DAY]
    assert await h.check() == "failed"
    [completion] = h.completions()
    assert completion.status == "failed"
    assert completion.error_type == "deadline"
    assert completion.error_message is not None
    assert "50/100 players (50.0% < 95%)" in completion.error_message
    assert completion.metadata["completed_players"] == 50
    assert await h.start() == "started"
    assert {r.batch_id for r in h.requests()} == {"2026-01-15-r1", "2026-01-15-r2"}


async def test_a_batch_above_coverage_at_its_deadline_ends_partial() -> None:
    h = Harness(players=100, batch_deadline=timedelta(minutes=10))
    await h.start()
    for i in range(96):  # steady progress: never idle for the stall timeout
        h.clock.advance(timedelta(seconds=6))
        await h.done(f"player{i:03d}")
    assert h.clock.now() - T0 == timedelta(minutes=9, seconds=36)
    h.clock.advance(timedelta(seconds=24))
    assert await h.check() == "completed"
    [completion] = h.completions()
    assert completion.status == "partial"
    assert completion.metadata["completion_reason"] == "deadline"


async def test_a_start_after_the_deadline_ends_the_old_batch_first() -> None:
    h = Harness(players=4, batch_deadline=timedelta(minutes=30))
    await h.start()
    await h.done("player000")
    h.clock.advance(timedelta(minutes=30))
    h.coordinator._publisher = Loopback(h)
    # No timer check in between (e.g. the timer's worker was down): the start itself ends it,
    # and the HTTP API's start is not refused (409) either.
    result = await h.coordinator.start(DAY, None, "key-1")
    assert result["status"] == "started"
    assert [(c.status, c.error_type) for c in h.completions()] == [("failed", "deadline")]
    assert {r.batch_id for r in h.requests()} == {"2026-01-15-r1", "2026-01-15-r2"}


async def test_every_refused_command_is_logged_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness(players=2)
    with caplog.at_level(logging.INFO, logger="phaseflow.agents.predictions.coordinator"):
        await h.start(command="c1")
        assert (await h.start_result(command="c1")).status == "duplicate"
        complete = await h.coordinator.apply(
            make_command("complete", DAY, issued_at=T0, batch_id="other")
        )
        assert complete is not None
        assert complete.status == "not_running"
        assert "not the current one" in complete.message
    messages = [r.getMessage() for r in caplog.records]
    assert any("not applied: duplicate: command c1 was already applied" in m for m in messages)
    assert any("not applied: not_running: batch other" in m for m in messages)


async def test_bad_progress_records_are_dead_lettered() -> None:
    h = Harness()
    await h.coordinator.handle(b'{"kind": "nope"}', Origin("t", 0, 7, b"2026-01-15"))
    await h.coordinator.handle(b"not json", Origin("t", 0, 8, None))
    letters = [decode(DeadLetter, v) for _, v in h.publisher.on(TopicName.DEAD_LETTERS)]
    assert [(d.offset, d.error_type) for d in letters] == [(7, "invalid_field"), (8, "not_json")]


def test_progress_records_round_trip() -> None:
    cmd = make_command("start", DAY, issued_at=T0, batch_id="b")
    assert decode_progress(encode(cmd)) == cmd
    done = PlayerDone(
        game_date=DAY, batch_id="b", player_lookup="p", request_id="r", predictions=3, done_at=T0
    )
    assert decode_progress(encode(done)) == done


async def test_api_start_waits_for_the_agent_and_returns_status_and_batch_id() -> None:
    h = Harness(players=2)

    h.coordinator._publisher = Loopback(h)
    result = await h.coordinator.start(DAY, None, "key-1")
    assert result["status"] == "started"
    assert result["batch_id"] == "2026-01-15-r1"
    with pytest.raises(BatchAlreadyRunningError):
        await h.coordinator.start(DAY, None, "key-1")


async def test_an_expired_date_drops_its_state_and_markers_only() -> None:
    h = Harness(players=2)
    await h.start()
    for i in range(2):
        await h.done(f"player{i:03d}")
    h.markers["2026-01-15-r1|player009"] = 4  # written before markers carried the date
    h.markers["2026-01-20|2026-01-15-r1|player000"] = 4  # another date, same batch id
    h.clock.advance(timedelta(days=8))  # past the registry's 7 days of retention
    assert h.coordinator.due_checks() == [DAY]
    assert await h.check() == "checked"
    assert h.coordinator.date_state(DAY) is None
    assert h.markers == {"2026-01-20|2026-01-15-r1|player000": 4}
