"""The prediction coordinator: one batch of PredictionRequests per game date, tracked to the end.

``Coordinator`` is the state machine of a date's batches: it owns every decision and works on plain
mappings, a publisher and a clock, so it is unit-tested without a broker;
``phaseflow.agents.predictions.coordinator_agent`` wires it into Faust. Around it: the table
values and results (``batch_state``), the messages a batch ends with (``batch_outcome``), the
timer's checks and expiry (``batch_checks``) and the request/reply client of the HTTP API
(``coordinator_client``).

All state changes arrive as records on ``{prefix}.prediction-progress`` keyed by ``game_date``
(see ``phaseflow.agents.predictions.messages``), so one date's starts, completions and
per-player "done" records are applied in order by one agent, on the partition that owns the
date's table entries.

Lifecycle of a batch (state in the ``prediction_batches`` table, key ``game_date``):

1. ``start`` (phase-5 trigger, rerun request, HTTP, CLI): refused with ``already_running`` while a
   batch of the date runs; otherwise reads the slate (one query), publishes one request per player
   to ``{prefix}.prediction-requests`` (key ``{game_date}:{player_lookup}``, no pacing) and records
   the batch as running. ``batch_id`` defaults to ``{game_date}-r{n}`` (n-th run of the date).
   A start that would do nothing (no players on the slate, no prop line for any of them, no
   prediction system enabled) ends the batch ``failed`` at once, without sending a request.
2. ``done`` records from the workers: counted once per (date, batch, player) (markers in the
   ``prediction_batch_players`` table), with the predictions each produced.
3. Done when every player reported, or, after ``stall_timeout`` without progress, when at least
   ``min_coverage_pct`` % did (both from the registry's phase 5), or on ``complete``. At the
   batch's deadline (``batch_deadline`` after its start) it ends anyway: ``partial`` at or above
   ``min_coverage_pct``, otherwise ``failed``; a start after that is no longer refused. A batch
   that ends with no prediction at all ends ``failed`` (``no_predictions``). Then exactly one
   phase-5 PhaseCompletion (processor ``prediction_coordinator``) with ``metadata``
   ``expected_players``, ``completed_players`` and ``total_predictions``; a failed one names the
   reason in ``error_type`` and ``error_message``.

Every refused command (``already_running``, ``already_complete``, ``duplicate``,
``not_running``) is logged and answered with a message saying why.

Over 400 lines on purpose: the transitions (start, done, complete, check, end) read and write one
date's state and call each other (a start ends a batch past its deadline, a done, a check or a
complete ends one), so splitting them would spread one state machine over modules importing
each other. What is not a transition lives in the modules named above.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from datetime import date, datetime, timedelta
from typing import Any, Final

from pydantic import JsonValue

from phaseflow.agents.predictions.batch_checks import BatchChecks
from phaseflow.agents.predictions.batch_outcome import (
    batch_completion,
    source_failure,
    stall_alert,
)
from phaseflow.agents.predictions.batch_state import (
    PHASE,
    BatchState,
    CommandResult,
    CoordinatorStats,
    DateState,
    FailureReason,
    ResultStatus,
    batch_ends_at,
    batch_result,
    default_batch_id,
    marker_key,
)
from phaseflow.agents.predictions.bq import QueryError
from phaseflow.agents.predictions.coordinator_client import CoordinatorClient
from phaseflow.agents.predictions.messages import (
    CommandSource,
    CoordinatorCommand,
    PlayerDone,
    ProgressRecord,
    decode_progress,
)
from phaseflow.agents.predictions.publishing import send_all
from phaseflow.agents.predictions.source import SlateSource, build_requests
from phaseflow.models.codec import EventDecodeError, encode
from phaseflow.models.events import PredictionRequest
from phaseflow.streams.core.clock import Clock
from phaseflow.streams.core.envelope import Origin, dead_letter
from phaseflow.streams.core.publisher import Publisher
from phaseflow.streams.core.registry import Registry
from phaseflow.streams.core.topics import TopicName

log = logging.getLogger(__name__)

DEFAULT_STALL_TIMEOUT: Final = timedelta(minutes=15)
#: A running batch ends (partial or failed) this long after its start, progress or not.
DEFAULT_BATCH_DEADLINE: Final = timedelta(hours=2)


class Coordinator:
    """Applies progress records to the batch tables and publishes requests and completions."""

    def __init__(
        self,
        *,
        registry: Registry,
        batches: MutableMapping[str, Any],
        players: MutableMapping[str, Any],
        publisher: Publisher,
        source: SlateSource,
        clock: Clock,
        max_message_bytes: int = 1_048_576,
        reply_timeout_seconds: float = 10.0,
        batch_deadline: timedelta = DEFAULT_BATCH_DEADLINE,
    ) -> None:
        spec = registry.phase(PHASE)
        self.min_coverage_pct = (
            spec.min_coverage_pct if spec.min_coverage_pct is not None else 100.0
        )
        self.stall_timeout = spec.stall_timeout or DEFAULT_STALL_TIMEOUT
        self.retention = timedelta(days=registry.retention_days)
        self.batch_deadline = batch_deadline
        self._systems_enabled = len(registry.enabled_systems)
        self._batches = batches
        self._players = players
        self._publisher = publisher
        self._source = source
        self._clock = clock
        self._max_message_bytes = max_message_bytes
        self.stats = CoordinatorStats()
        self._client = CoordinatorClient(
            send=self._send_command,
            date_state=self.date_state,
            clock=clock,
            reply_timeout_seconds=reply_timeout_seconds,
            batch_deadline=batch_deadline,
        )
        self._checks = BatchChecks(
            batches=batches,
            players=players,
            clock=clock,
            retention=self.retention,
            stall_timeout=self.stall_timeout,
            batch_deadline=batch_deadline,
        )

    # --- table ------------------------------------------------------------------------------

    def date_state(self, game_date: date) -> DateState | None:
        stored = self._batches.get(game_date.isoformat())
        return DateState.model_validate(stored) if stored is not None else None

    def states(self) -> list[DateState]:
        """Every date this worker holds (its partitions of the table)."""
        return [DateState.model_validate(v) for v in list(self._batches.values()) if v is not None]

    def _save(self, state: DateState) -> None:
        self._batches[state.game_date.isoformat()] = state.model_dump(mode="json")

    # --- records from the progress topic ----------------------------------------------------

    async def handle(self, raw: bytes, origin: Origin) -> CommandResult | None:
        """Apply one raw progress record (bad ones are dead-lettered)."""
        try:
            record = decode_progress(raw, max_bytes=self._max_message_bytes)
        except EventDecodeError as error:
            await self._dead_letter(raw, origin, error.reason, error.error_type)
            return None
        return await self.apply(record)

    async def apply(self, record: ProgressRecord) -> CommandResult | None:
        if isinstance(record, PlayerDone):
            await self._on_done(record)
            return None
        self.stats.commands += 1
        if record.kind == "start":
            result = await self._on_start(record)
        elif record.kind == "complete":
            result = await self._on_complete(record)
        else:
            result = await self._on_check(record)
        self._client.resolve(record.command_id, result)
        return result

    async def _refuse_start(
        self, state: DateState, command: CoordinatorCommand
    ) -> CommandResult | None:
        """The answer to a start that must not start a new batch, or None to go ahead."""
        game_date = command.game_date
        running = state.running
        if command.command_id in state.commands:
            if (
                running is not None
                and running.created_by == command.command_id
                and not running.requests_sent
            ):
                # Redelivered (the worker may have died before every request went out): send
                # them again; same ids and keys, so nothing downstream counts twice.
                sent = await self._publish_requests(game_date, running.batch_id, command)
                return CommandResult.of("resent", running, game_date, f"{sent} requests re-sent")
            return self._result_for(
                "duplicate",
                state.current,
                command,
                f"command {command.command_id} was already applied; nothing done",
            )
        if running is not None:
            self._save(state.seen(command.command_id))
            deadline = self._deadline_of(running)
            return CommandResult.of(
                "already_running",
                running,
                game_date,
                f"batch {running.batch_id} of {game_date} is already running "
                f"({running.completed_players}/{running.expected_players} players done); "
                f"it ends by {deadline.isoformat()} at the latest",
            )
        if command.batch_id is not None and command.batch_id in state.completed:
            self._save(state.seen(command.command_id))
            done = state.current
            same = done is not None and done.batch_id == command.batch_id
            return self._result_for(
                "already_complete",
                done if same else None,
                command,
                f"batch {command.batch_id} of {game_date} already ended; "
                "start without a batch id (or with a new one) to run again",
            )
        return None

    @staticmethod
    def _result_for(
        status: ResultStatus,
        batch: BatchState | None,
        command: CoordinatorCommand,
        message: str = "",
    ) -> CommandResult:
        if batch is None:
            return CommandResult(status, command.game_date, command.batch_id, message=message)
        return CommandResult.of(status, batch, command.game_date, message)

    @staticmethod
    def _log_refusal(command: CoordinatorCommand, result: CommandResult) -> None:
        if result.status == "resent":
            log.info(
                "prediction batch %s: start command %s redelivered, %s",
                result.batch_id,
                command.command_id,
                result.message,
            )
            return
        level = logging.INFO if result.status == "duplicate" else logging.WARNING
        log.log(
            level,
            "prediction %s of %s (%s, by %s) not applied: %s: %s",
            command.kind,
            command.game_date,
            command.source,
            command.requested_by,
            result.status,
            result.message,
        )

    def _deadline_of(self, batch: BatchState) -> datetime:
        return batch_ends_at(batch, self.batch_deadline)

    def _nothing_to_do(
        self, game_date: date, requests: list[PredictionRequest]
    ) -> tuple[FailureReason, str] | None:
        """Why a batch over these requests would produce nothing, or None if it would not."""
        if not requests:
            return "no_slate", (
                f"no players on the slate of {game_date} "
                "(upcoming_player_game_context has no rows for the date)"
            )
        if not any(request.line_values for request in requests):
            return "no_lines", (
                f"none of the {len(requests)} players on the slate of {game_date} has a prop "
                "line (prop_lines has no rows for the date)"
            )
        if self._systems_enabled == 0:
            return "no_systems", "no prediction system is enabled in the registry ([[systems]])"
        return None

    async def _on_start(self, command: CoordinatorCommand) -> CommandResult:
        game_date = command.game_date
        state = self.date_state(game_date) or DateState(game_date=game_date)
        now = self._clock.now()
        running = state.running
        if running is not None and now >= self._deadline_of(running):
            # Past its deadline: it ends now, so this start is not refused behind it.
            await self._end_at_deadline(state, running)
            state = self.date_state(game_date) or state
        refused = await self._refuse_start(state, command)
        if refused is not None:
            self._log_refusal(command, refused)
            return refused
        state = state.seen(command.command_id)
        run = state.runs + 1
        batch_id = command.batch_id or default_batch_id(game_date, run)
        while batch_id in state.completed:  # an explicit id took the default's name earlier
            run += 1
            batch_id = default_batch_id(game_date, run)
        try:
            rows = await self._source.read(game_date)
        except QueryError as error:
            self._save(state)
            await self._publish_failure(game_date, batch_id, command, str(error))
            return CommandResult("failed", game_date, batch_id, message=str(error))
        requests = build_requests(rows, game_date=game_date, batch_id=batch_id, requested_at=now)
        batch = BatchState(
            batch_id=batch_id,
            run=run,
            status="running",
            expected_players=len(requests),
            started_at=now,
            last_progress_at=now,
            deadline_at=now + self.batch_deadline,
            source=command.source,
            requested_by=command.requested_by,
            created_by=command.command_id,
        )
        state = state.model_copy(update={"runs": run, "current": batch})
        nothing = self._nothing_to_do(game_date, requests)
        if nothing is not None:
            reason, why = nothing
            batch = await self._fail(state, batch, reason, why)
            return CommandResult.of("failed", batch, game_date, why)
        self._save(state)
        await send_all(
            self._publisher,
            ((TopicName.PREDICTION_REQUESTS, r.key, encode(r)) for r in requests),
        )
        self.stats.requests_published += len(requests)
        batch = batch.model_copy(update={"requests_sent": True})
        state = state.model_copy(update={"current": batch})
        self._save(state)
        log.info(
            "prediction batch %s started (%s, by %s): %d players",
            batch_id,
            command.source,
            command.requested_by,
            len(requests),
        )
        return CommandResult.of("started", batch, game_date)

    async def _publish_requests(
        self, game_date: date, batch_id: str, command: CoordinatorCommand
    ) -> int:
        try:
            rows = await self._source.read(game_date)
        except QueryError as error:
            log.warning("could not re-send the requests of %s: %s", batch_id, error)
            return 0
        requests = build_requests(
            rows, game_date=game_date, batch_id=batch_id, requested_at=command.issued_at
        )
        await send_all(
            self._publisher,
            ((TopicName.PREDICTION_REQUESTS, r.key, encode(r)) for r in requests),
        )
        self.stats.requests_published += len(requests)
        return len(requests)

    async def _on_done(self, done: PlayerDone) -> None:
        state = self.date_state(done.game_date)
        running = state.running if state is not None else None
        if state is None or running is None or running.batch_id != done.batch_id:
            self.stats.done_ignored += 1  # a late report of an earlier batch, or of none
            return
        marker = marker_key(done.game_date, done.batch_id, done.player_lookup)
        if self._players.get(marker) is not None:
            self.stats.done_ignored += 1  # a redelivered request, predicted twice
            return
        self._players[marker] = done.predictions
        self.stats.done_counted += 1
        batch = running.model_copy(
            update={
                "completed_players": running.completed_players + 1,
                "total_predictions": running.total_predictions + done.predictions,
                "last_progress_at": self._clock.now(),
            }
        )
        state = state.model_copy(update={"current": batch})
        if batch.completed_players >= batch.expected_players:
            await self._complete(state, batch, "all_players")
        else:
            self._save(state)

    async def _on_complete(self, command: CoordinatorCommand) -> CommandResult:
        result = await self._complete_command(command)
        if result.status not in ("completed", "failed"):  # it did not end the batch
            self._log_refusal(command, result)
        return result

    async def _complete_command(self, command: CoordinatorCommand) -> CommandResult:
        game_date = command.game_date
        state = self.date_state(game_date)
        if state is None or state.current is None:
            return CommandResult(
                "not_running", game_date, command.batch_id, message=f"no batch of {game_date}"
            )
        state = state.seen(command.command_id)
        current = state.current
        assert current is not None  # noqa: S101 -- seen() keeps current
        if command.batch_id is not None and command.batch_id != current.batch_id:
            self._save(state)
            status: ResultStatus = (
                "already_complete" if command.batch_id in state.completed else "not_running"
            )
            return CommandResult(
                status,
                game_date,
                command.batch_id,
                message=f"batch {command.batch_id} of {game_date} is not the current one "
                f"({current.batch_id}, {current.status})",
            )
        if current.status != "running":
            self._save(state)
            return CommandResult.of(
                "already_complete",
                current,
                game_date,
                f"batch {current.batch_id} of {game_date} already ended ({current.status})",
            )
        batch = await self._complete(state, current, "manual")
        return CommandResult.of(batch_result(batch), batch, game_date, batch.failure or "")

    async def _on_check(self, command: CoordinatorCommand) -> CommandResult:
        game_date = command.game_date
        self._checks.received(game_date)
        state = self.date_state(game_date)
        if state is None:
            return CommandResult("not_running", game_date, None)
        now = self._clock.now()
        running = state.running
        if running is None:
            if self._checks.expired(game_date, now):
                self._checks.expire(state)
            return CommandResult("checked", game_date, None)
        return await self._check_running(state, running, now)

    async def _check_running(
        self, state: DateState, running: BatchState, now: datetime
    ) -> CommandResult:
        """Deadline passed, stalled above the minimum coverage (done) or below it (alert)."""
        game_date = state.game_date
        if now >= self._deadline_of(running):
            batch = await self._end_at_deadline(state, running)
            return CommandResult.of(batch_result(batch), batch, game_date, batch.failure or "")
        if now - running.last_progress_at < self.stall_timeout:
            return CommandResult.of("checked", running, game_date)
        if running.coverage_pct >= self.min_coverage_pct:
            batch = await self._complete(state, running, "stalled")
            return CommandResult.of(batch_result(batch), batch, game_date, batch.failure or "")
        if running.stalled_at is None or running.stalled_at < running.last_progress_at:
            await self._alert_stalled(running, game_date, now)
            batch = running.model_copy(update={"stalled_at": now})
            self._save(state.model_copy(update={"current": batch}))
            return CommandResult.of("checked", batch, game_date, "stalled below coverage")
        return CommandResult.of("checked", running, game_date)

    # --- completion -------------------------------------------------------------------------

    async def _end_at_deadline(self, state: DateState, batch: BatchState) -> BatchState:
        """The batch's time is up: partial at or above the minimum coverage, else failed."""
        if batch.coverage_pct >= self.min_coverage_pct:
            return await self._complete(state, batch, "deadline")
        why = (
            f"batch {batch.batch_id} of {state.game_date} reached its deadline "
            f"({self._deadline_of(batch).isoformat()}) with {batch.completed_players}/"
            f"{batch.expected_players} players ({batch.coverage_pct:.1f}% < "
            f"{self.min_coverage_pct:g}%)"
        )
        return await self._fail(state, batch, "deadline", why)

    async def _complete(self, state: DateState, batch: BatchState, reason: str) -> BatchState:
        """Every player (or enough of them) reported; with no prediction at all it failed."""
        if batch.total_predictions == 0:
            why = (
                f"batch {batch.batch_id} of {state.game_date} produced no predictions "
                f"({batch.completed_players}/{batch.expected_players} players reported; every "
                "prediction system failed, was skipped with its circuit open, or none is enabled "
                "in the workers' registry)"
            )
            return await self._fail(state, batch, "no_predictions", why)
        return await self._end(state, batch, reason, None)

    async def _fail(
        self, state: DateState, batch: BatchState, reason: FailureReason, why: str
    ) -> BatchState:
        return await self._end(state, batch, reason, why)

    async def _end(
        self, state: DateState, batch: BatchState, reason: str, failure: str | None
    ) -> BatchState:
        now = self._clock.now()
        done = batch.model_copy(
            update={
                "status": "complete" if failure is None else "failed",
                "completed_at": now,
                "completion_reason": reason,
                "failure": failure,
            }
        )
        state = state.model_copy(
            update={"current": done, "completed": (*state.completed, batch.batch_id)[-50:]}
        )
        self._save(state)
        completion = batch_completion(state.game_date, done, reason, failure, now)
        await self._publisher.send(TopicName.PHASE_COMPLETIONS, completion.key, encode(completion))
        self.stats.completions += 1
        if failure is not None:
            log.error("prediction batch %s failed (%s): %s", done.batch_id, reason, failure)
            return done
        log.info(
            "prediction batch %s complete (%s): %d/%d players, %d predictions",
            done.batch_id,
            reason,
            done.completed_players,
            done.expected_players,
            done.total_predictions,
        )
        return done

    async def _publish_failure(
        self, game_date: date, batch_id: str, command: CoordinatorCommand, error: str
    ) -> None:
        """The slate could not be read: a failed completion (the readiness agent reruns it)."""
        completion = source_failure(
            game_date, batch_id, command.command_id, error, self._clock.now()
        )
        await self._publisher.send(TopicName.PHASE_COMPLETIONS, completion.key, encode(completion))
        log.error("prediction batch %s not started: %s", batch_id, error)

    async def _alert_stalled(self, batch: BatchState, game_date: date, now: datetime) -> None:
        alert = stall_alert(
            batch,
            game_date,
            now,
            stall_timeout=self.stall_timeout,
            min_coverage_pct=self.min_coverage_pct,
        )
        await self._publisher.send(TopicName.ALERTS, alert.key, encode(alert))

    # --- timer ------------------------------------------------------------------------------

    def due_checks(self) -> list[date]:
        """Dates whose batch may have stalled (or whose state expired): look at them now."""
        return self._checks.due(self.states())

    async def send_due_checks(self) -> int:
        """The timer's job: a ``check`` to the partition that owns each due date."""
        return await self._checks.send_due(self.states(), self._send_command)

    # --- entry points (HTTP API, CLI, triggers): phaseflow.agents.predictions.coordinator_client

    async def submit(
        self, command: CoordinatorCommand, *, wait: float | None = None
    ) -> CommandResult | None:
        """Send ``command`` to the progress topic and wait for this worker to apply it.

        None when it was not applied within ``wait`` seconds (e.g. another worker owns the
        date's partition): it still will be.
        """
        return await self._client.submit(command, wait=wait)

    async def start(
        self,
        game_date: date,
        batch_id: str | None = None,
        requested_by: str = "api",
        *,
        source: CommandSource = "api",
    ) -> Mapping[str, JsonValue]:
        """Start a batch (``POST /coordinator/start``); a running one raises (HTTP 409)."""
        return await self._client.start(game_date, batch_id, requested_by, source=source)

    async def complete(
        self, game_date: date, batch_id: str | None = None, requested_by: str = "api"
    ) -> Mapping[str, JsonValue]:
        """Finish the running batch now (``POST /coordinator/complete``); none raises (409)."""
        return await self._client.complete(game_date, batch_id, requested_by)

    async def _send_command(self, command: CoordinatorCommand) -> None:
        await self._publisher.send(TopicName.PREDICTION_PROGRESS, command.key, encode(command))

    # --- dead letters -----------------------------------------------------------------------

    async def _dead_letter(self, raw: bytes, origin: Origin, error: str, error_type: str) -> None:
        letter = dead_letter(
            origin, raw, error=error, error_type=error_type, failed_at=self._clock.now()
        )
        await self._publisher.send(TopicName.DEAD_LETTERS, letter.key or "", encode(letter))
        self.stats.dead_letters += 1
        log.warning(
            "dead-lettered %s[%d]@%d: %s", origin.topic, origin.partition, origin.offset, error
        )
