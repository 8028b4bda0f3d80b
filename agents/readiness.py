"""Readiness orchestration: record completions per (game_date, phase) and fire the next phase.

The Faust agent in ``streams.app`` hands each raw record to ``ReadinessProcessor.handle``; the
processor owns the decisions and is testable with a plain dict as its table.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from agents.envelope import Origin, dead_letter
from agents.publisher import Publisher
from agents.readiness_state import MAX_SEEN_IDS, PhaseState, ProcessorRecord, TriggerLedgerEntry
from agents.rules import Decision, evaluate_ready
from models.codec import EventDecodeError, decode, encode
from models.events import PhaseCompletion, PhaseTrigger
from streams.clock import Clock
from streams.registry import Registry
from streams.topics import TopicName

log = logging.getLogger(__name__)


class ReadinessProcessor:
    """Turns PhaseCompletion records into at most one ready trigger per (date, phase)."""

    def __init__(
        self,
        *,
        registry: Registry,
        table: MutableMapping[str, Any],
        publisher: Publisher,
        clock: Clock,
        pipeline_timezone: str,
        max_message_bytes: int,
    ) -> None:
        self._registry = registry
        self._table = table
        self._publisher = publisher
        self._clock = clock
        self._zone = ZoneInfo(pipeline_timezone)
        self._max_message_bytes = max_message_bytes

    def today(self) -> date:
        """The pipeline's current date, in its own time zone (decides same-day mode)."""
        return self._clock.now().astimezone(self._zone).date()

    async def handle(self, raw: bytes, origin: Origin) -> PhaseTrigger | None:
        """Process one raw completion record; return the trigger it fired, if any."""
        try:
            completion = self._validate(raw)
        except EventDecodeError as error:
            await self._dead_letter(raw, origin, error.reason, error.error_type)
            return None
        return await self._record(completion)

    def _validate(self, raw: bytes) -> PhaseCompletion:
        completion = decode(PhaseCompletion, raw, max_bytes=self._max_message_bytes)
        known = self._registry.phase_for_processor(completion.processor_name)
        if known is None:
            raise EventDecodeError(
                f"processor_name: unknown processor {completion.processor_name!r} "
                f"(not in the registry)",
                "unknown_processor",
            )
        if known != completion.phase:
            raise EventDecodeError(
                f"phase: processor {completion.processor_name!r} belongs to phase {known}, "
                f"not {completion.phase}",
                "wrong_phase",
            )
        return completion

    async def _record(self, completion: PhaseCompletion) -> PhaseTrigger | None:
        key = PhaseState.table_key(completion.game_date, completion.phase)
        stored = self._table.get(key)
        state = (
            PhaseState.from_table(stored)
            if stored is not None
            else PhaseState(game_date=completion.game_date, phase=completion.phase)
        )
        dedup_id = completion.dedup_id
        if state.has_seen(dedup_id):
            log.debug("duplicate completion %s for %s ignored", dedup_id, key)
            return None
        state = _with_completion(state, completion, dedup_id)
        trigger = self._maybe_trigger(state)
        if trigger is not None:
            state = state.model_copy(
                update={
                    "trigger": TriggerLedgerEntry(
                        trigger_id=trigger.trigger_id,
                        reason=trigger.reason,
                        rule=trigger.rule,
                        triggered_at=trigger.triggered_at,
                    )
                }
            )
        # The ledger entry is written before the trigger is sent: if the send is then lost to
        # a crash, the replayed completion re-sends the same trigger_id (idempotent downstream)
        # instead of leaving the phase stuck.
        self._table[key] = state.to_table()
        if trigger is not None:
            await self._publisher.send(TopicName.PHASE_TRIGGERS, trigger.key, encode(trigger))
            log.info(
                "phase %s of %s started: %s (%s)",
                trigger.phase,
                trigger.game_date,
                trigger.reason,
                trigger.rule,
            )
        return trigger

    def _maybe_trigger(self, state: PhaseState) -> PhaseTrigger | None:
        if state.trigger is not None:
            return None
        spec = self._registry.phase(state.phase)
        # Ungated phases (scrapers) feed the next phase directly; the last phase starts nothing.
        if not spec.gated or not self._registry.has_phase(state.phase + 1):
            return None
        expected = spec.expected_processors(state.game_date, self.today())
        decision = evaluate_ready(spec, state, expected)
        if decision is None:
            return None
        return self._trigger_for(state, decision)

    def _trigger_for(self, state: PhaseState, decision: Decision) -> PhaseTrigger:
        next_phase = state.phase + 1
        return PhaseTrigger(
            game_date=state.game_date,
            phase=next_phase,
            reason=decision.reason,
            rule=decision.rule,
            completed=list(decision.completed),
            missing=list(decision.missing),
            trigger_id=PhaseTrigger.make_id(state.game_date, next_phase, decision.reason),
            triggered_at=self._clock.now(),
            correlation_id=f"{state.game_date.isoformat()}:{next_phase}",
        )

    async def _dead_letter(self, raw: bytes, origin: Origin, error: str, error_type: str) -> None:
        letter = dead_letter(
            origin, raw, error=error, error_type=error_type, failed_at=self._clock.now()
        )
        key = letter.key or ""
        await self._publisher.send(TopicName.DEAD_LETTERS, key, encode(letter))
        log.warning(
            "dead-lettered %s[%d]@%d: %s", origin.topic, origin.partition, origin.offset, error
        )


def _with_completion(state: PhaseState, completion: PhaseCompletion, dedup_id: str) -> PhaseState:
    previous = state.processors.get(completion.processor_name)
    at = completion.timestamp
    record = ProcessorRecord(
        status=completion.status,
        record_count=completion.record_count,
        first_completed_at=min(previous.first_completed_at, at) if previous else at,
        last_completed_at=max(previous.last_completed_at, at) if previous else at,
        attempts=previous.attempts + 1 if previous else 1,
        last_execution_id=dedup_id,
    )
    # A late, older event must not overwrite a newer status (events may arrive reordered).
    if previous is not None and at < previous.last_completed_at:
        record = previous.model_copy(
            update={"attempts": record.attempts, "first_completed_at": record.first_completed_at}
        )
    seen = (*state.seen_ids, dedup_id)[-MAX_SEEN_IDS:]
    first = state.first_completion_at
    last = state.last_completion_at
    return state.model_copy(
        update={
            "processors": {**state.processors, completion.processor_name: record},
            "seen_ids": seen,
            "first_completion_at": min(first, at) if first else at,
            "last_completion_at": max(last, at) if last else at,
        }
    )
