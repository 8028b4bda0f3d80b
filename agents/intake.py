"""Completion intake: which run a completion belongs to, when phaseflow received it, and how a
new status of a processor combines with the one recorded.

Rules (docs/operations.md, "Completion intake"):

* **Identity** of a completion is ``(processor_name, execution_id, status)``: several processors
  may share one workflow run id, and one run may report ``failed`` and then ``success``. A
  completion without ``execution_id`` is identified by the hash of processor, date, status and
  timestamp (``PhaseCompletion.dedup_id``). A completion whose identity was seen before is a
  duplicate: dropped and counted.
* **Receive time** decides deadlines: when the broker appended the record (LogAppendTime),
  never later than the worker's clock; the worker's clock for a record its producer stamped. A
  publisher's ``timestamp`` more than the tolerance ahead of the receive time is clamped to the
  receive time, logged and counted.
* **Status order** is the order phaseflow received the completions, never their timestamps: a
  processor's newest status replaces the recorded one, except that ``failed`` never replaces a
  done status (``success``/``partial``): the data of the successful run exists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol

from phaseflow.agents.readiness_state import (
    DONE_STATUSES,
    GATE_FIELDS,
    MAX_SEEN_IDS,
    PhaseState,
    ProcessorRecord,
)
from phaseflow.models.codec import EventDecodeError, decode
from phaseflow.models.events import PhaseCompletion

if TYPE_CHECKING:
    from phaseflow.streams.core.registry import Registry

log = logging.getLogger(__name__)

#: Why a completion changed nothing: seen before, or a failure after the processor was done.
DropReason = Literal["duplicate", "failed_after_done"]


class IntakeCounter(Protocol):
    """Where intake counts what it dropped or corrected (``/metrics`` in the service)."""

    def dropped(self, reason: DropReason) -> None: ...

    def clamped(self) -> None: ...


class NoCounter:
    """Counts nothing: for code paths that run without metrics (tests, tools)."""

    def dropped(self, reason: DropReason) -> None:
        del reason

    def clamped(self) -> None:
        pass


def validate(registry: Registry, raw: bytes, *, max_bytes: int) -> PhaseCompletion:
    """Decode a completion and check it against the registry: a known processor, in its phase."""
    completion = decode(PhaseCompletion, raw, max_bytes=max_bytes)
    known = registry.phase_for_processor(completion.processor_name)
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


def identity(completion: PhaseCompletion) -> str:
    """The dedup key: ``processor/execution_id/status``, or the content hash without a run id
    (``PhaseCompletion.dedup_id``, which the HTTP API also returns)."""
    return completion.dedup_id


@dataclass(frozen=True)
class Received:
    """A completion as phaseflow takes it: its timestamp bounded, and when it arrived."""

    completion: PhaseCompletion
    received_at: datetime
    #: How far ahead of the receive time the publisher's timestamp was, when it was clamped.
    clamped_by: timedelta | None = None


def receive(
    completion: PhaseCompletion,
    *,
    record_time: datetime | None,
    now: datetime,
    tolerance: timedelta,
) -> Received:
    """Decide the receive time and clamp a timestamp too far in the future."""
    received_at = now if record_time is None else min(record_time, now)
    ahead = completion.timestamp - received_at
    if ahead <= tolerance:
        return Received(completion, received_at)
    log.warning(
        "completion of %s for %s is stamped %s, %s ahead of its receive time %s (tolerance %s): "
        "clamped to the receive time",
        completion.processor_name,
        completion.game_date,
        completion.timestamp.isoformat(),
        ahead,
        received_at.isoformat(),
        tolerance,
    )
    clamped = completion.model_copy(update={"timestamp": received_at})
    return Received(clamped, received_at, clamped_by=ahead)


def merged_record(
    previous: ProcessorRecord | None, received: Received, key: str
) -> tuple[ProcessorRecord, DropReason | None]:
    """The processor's record after ``received``; the reason when its status was not taken."""
    completion = received.completion
    at = completion.timestamp
    gate = {
        name: value
        for name in GATE_FIELDS
        if isinstance(value := completion.metadata.get(name), int) and not isinstance(value, bool)
    }
    record = ProcessorRecord(
        status=completion.status,
        record_count=completion.record_count,
        first_completed_at=min(previous.first_completed_at, at) if previous else at,
        last_completed_at=max(previous.last_completed_at, at) if previous else at,
        attempts=previous.attempts + 1 if previous else 1,
        last_execution_id=key,
        last_received_at=received.received_at,
        gate=gate,
    )
    if previous is not None and completion.status == "failed" and previous.status in DONE_STATUSES:
        kept = previous.model_copy(
            update={
                "attempts": record.attempts,
                "first_completed_at": record.first_completed_at,
                "last_completed_at": record.last_completed_at,
            }
        )
        return kept, "failed_after_done"
    return record, None


def with_completion(
    state: PhaseState, received: Received, key: str
) -> tuple[PhaseState, DropReason | None]:
    """``state`` with ``received`` recorded: its processor's record, the dedup id, the first and
    last completion and receive times; the reason when its status was not taken."""
    name = received.completion.processor_name
    record, dropped = merged_record(state.processors.get(name), received, key)
    at = received.completion.timestamp
    first, last = state.first_completion_at, state.last_completion_at
    came = state.first_received_at
    updated = state.model_copy(
        update={
            "processors": {**state.processors, name: record},
            "seen_ids": (*state.seen_ids, key)[-MAX_SEEN_IDS:],
            "first_completion_at": min(first, at) if first else at,
            "last_completion_at": max(last, at) if last else at,
            "first_received_at": min(came, received.received_at) if came else received.received_at,
        }
    )
    return updated, dropped
