"""One backoff and attempt budget for every rerun the readiness agent requests.

Every path (a ``failed`` completion, processors missing at a deadline, the cleanup scan, the
validation gate) asks here, per (date, phase, processor), so no path can rerun faster or more
often than the registry's ``[rerun]`` allows (docs/intake-and-reruns.md, "One rerun budget"):

* at most ``max_attempts`` reruns; the request past that opens the circuit (one alert, no more
  automatic reruns for that processor of that date and phase);
* attempt ``k + 1`` goes out no earlier than ``backoff x 2^(k-1)`` after attempt ``k``;
* a ``failed`` completion's first rerun also waits ``backoff x 2^k`` from the failure, so the
  processor's own retry gets a chance first;
* while a rerun is scheduled, further requests add nothing: the scheduled one stands.

Pure functions of (record, policy, reason, now): phaseflow.agents.rerun_dispatch applies the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from phaseflow.agents.readiness_state import RerunRecord

if TYPE_CHECKING:
    from phaseflow.streams.core.registry import RerunSpec

#: What a request came to: a rerun to send now, one scheduled for later, nothing new because one
#: is pending or the circuit is already open, or the circuit opened by this request.
RerunAction = Literal["send", "scheduled", "pending", "circuit_opened", "circuit_open"]


@dataclass(frozen=True)
class RerunStep:
    """The processor's rerun record after a request, and what the request came to."""

    record: RerunRecord
    action: RerunAction
    #: The attempt number of the rerun to send (``send``).
    attempt: int = 0
    #: When the scheduled rerun goes out (``scheduled``, ``pending``).
    due_at: datetime | None = None

    @property
    def is_new(self) -> bool:
        """The request decided something (a rerun now or later, or the circuit opened)."""
        return self.action in ("send", "scheduled", "circuit_opened")


def spacing_ends(record: RerunRecord, policy: RerunSpec) -> datetime | None:
    """The earliest moment the next attempt may go out, or None before the first one."""
    if record.requested == 0 or record.last_requested_at is None:
        return None
    return record.last_requested_at + policy.backoff * (1 << (record.requested - 1))


def request_rerun(record: RerunRecord, policy: RerunSpec, reason: str, now: datetime) -> RerunStep:
    """Ask for a rerun for ``reason`` at ``now``."""
    if record.circuit_open:
        return RerunStep(record, "circuit_open")
    if record.requested >= policy.max_attempts:
        return _open_circuit(record)
    if record.next_due_at is not None:
        return RerunStep(record, "pending", due_at=record.next_due_at)
    due = now + policy.backoff * (1 << record.requested) if reason == "failed" else now
    if (spaced := spacing_ends(record, policy)) is not None:
        due = max(due, spaced)
    if due <= now:
        return _send(record, now)
    scheduled = record.model_copy(update={"next_due_at": due, "next_reason": reason})
    return RerunStep(scheduled, "scheduled", due_at=due)


def release_due(record: RerunRecord, policy: RerunSpec, now: datetime) -> RerunStep:
    """A scheduled rerun whose time has come: send it, within the attempt cap."""
    if record.circuit_open:
        return RerunStep(record, "circuit_open")
    if record.requested >= policy.max_attempts:
        return _open_circuit(record)
    return _send(record, now)


def cancel_pending(record: RerunRecord) -> RerunRecord:
    """The processor is done: a scheduled rerun is not needed any more."""
    return record.model_copy(update={"next_due_at": None, "next_reason": None})


def _send(record: RerunRecord, now: datetime) -> RerunStep:
    sent = record.model_copy(
        update={
            "requested": record.requested + 1,
            "last_requested_at": now,
            "next_due_at": None,
            "next_reason": None,
        }
    )
    return RerunStep(sent, "send", attempt=sent.requested)


def _open_circuit(record: RerunRecord) -> RerunStep:
    opened = record.model_copy(
        update={"circuit_open": True, "next_due_at": None, "next_reason": None}
    )
    return RerunStep(opened, "circuit_opened")
