"""Per ``(game_date, phase)`` readiness state, as kept in the changelogged readiness table."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

# Dedup ids remembered per (date, phase). A phase has a handful of processors with a few
# attempts each; the cap only bounds state if a publisher goes haywire with fresh ids.
MAX_SEEN_IDS = 512

DONE_STATUSES = frozenset({"success", "partial"})

#: Phase-5 completion metadata the validation gate reads (docs/contract.md#phasecompletion).
GATE_FIELDS = ("expected_players", "completed_players", "total_predictions")


#: (game_date, phase) -> its table key: asked several times per event, formatted once.
_TABLE_KEYS: dict[tuple[date, int], str] = {}
_TABLE_KEYS_MAX = 100_000


class _StateModel(BaseModel):
    """A frozen state model whose shallow ``model_copy`` is a single dict merge: every
    completion copies its phase state several times (the record, the dedup id, the deadline,
    the save stamp), and pydantic's generic copy (three ``copy.copy`` calls and a private-attribute
    scan) was the largest pure-Python cost per event. Same result as pydantic's: the fields
    updated without validation, ``model_fields_set`` grown by the updated names."""

    model_config = ConfigDict(frozen=True)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        if deep or self.__pydantic_extra__ is not None or self.__pydantic_private__ is not None:
            return super().model_copy(update=update, deep=deep)
        cls = type(self)
        copied = cls.__new__(cls)
        if update:
            values = {**self.__dict__, **update}
            fields_set = self.__pydantic_fields_set__.union(update)
        else:
            values, fields_set = dict(self.__dict__), set(self.__pydantic_fields_set__)
        object.__setattr__(copied, "__dict__", values)
        object.__setattr__(copied, "__pydantic_extra__", None)
        object.__setattr__(copied, "__pydantic_fields_set__", fields_set)
        object.__setattr__(copied, "__pydantic_private__", None)
        return copied


class ProcessorRecord(_StateModel):
    """What is known of one processor's completions for one date."""

    status: str
    record_count: int
    first_completed_at: datetime
    last_completed_at: datetime
    attempts: int = 1
    #: Dedup key (phaseflow.agents.intake.identity) of the completion whose status is recorded.
    last_execution_id: str
    #: When phaseflow received that completion (None in states written before it was kept).
    last_received_at: datetime | None = None
    gate: dict[str, int] = Field(default_factory=dict)


class TriggerLedgerEntry(_StateModel):
    """The one ready/timeout trigger a phase may fire, kept so it is never fired twice."""

    trigger_id: str
    reason: str
    rule: str
    triggered_at: datetime
    #: The trigger's ``upstream``: each earlier gated phase -> how it finished.
    upstream: dict[str, str] = Field(default_factory=dict)
    #: Processors that counted when it fired: a later completion of one of them is a rerun.
    completed: tuple[str, ...] = ()


class RerunRecord(_StateModel):
    """Reruns requested for one processor of one (date, phase), and the next one pending."""

    requested: int = 0
    last_requested_at: datetime | None = None
    next_due_at: datetime | None = None
    next_reason: str | None = None
    circuit_open: bool = False


class PhaseState(_StateModel):
    """Readiness of one phase of one game date."""

    game_date: date
    phase: int
    processors: dict[str, ProcessorRecord] = Field(default_factory=dict)
    #: Dedup keys of the completions taken (phaseflow.agents.intake.identity), the newest
    #: MAX_SEEN_IDS.
    seen_ids: tuple[str, ...] = ()
    #: The earliest and latest completion ``timestamp`` (the publishers', clamped when too far
    #: ahead; phaseflow.agents.intake): latency and SLA.
    first_completion_at: datetime | None = None
    last_completion_at: datetime | None = None
    #: When phaseflow received the phase's first completion: deadlines are measured from here.
    first_received_at: datetime | None = None
    #: When the previous phase's trigger started this one (cleanup waits from here).
    started_at: datetime | None = None
    trigger: TriggerLedgerEntry | None = None
    #: The next tier or max_wait deadline, checked against the wall clock by the timer.
    deadline_at: datetime | None = None
    #: Deadline alert and missing-processor reruns were already raised (once per phase).
    deadline_handled: bool = False
    reruns: dict[str, RerunRecord] = Field(default_factory=dict)
    #: Dedup id of the completion the validation gate last rejected (alert once per attempt).
    gate_rejected_id: str | None = None
    cleanup_at: datetime | None = None
    #: When the sla_breach alert was raised (once per phase; see phaseflow.agents.phase_timing).
    sla_breached_at: datetime | None = None
    #: Wall-clock time of the last write; retention counts idle time from here.
    updated_at: datetime | None = None
    #: When the one phase_stalled alert was raised (see phaseflow.agents.stalls).
    stall_alerted_at: datetime | None = None
    #: A rerun of this phase after it fired: when its next phase fires again
    #: (phaseflow.agents.rearm).
    refire_due_at: datetime | None = None
    #: Triggers of earlier rounds (a re-fire moves the current one here).
    previous_triggers: tuple[TriggerLedgerEntry, ...] = ()
    #: 0, then one more each time a re-fire of the previous phase re-armed this one.
    round: int = 0
    #: Fingerprint of the registry this state was last evaluated under; another one at start
    #: (a registry change) makes the timer ask for a fresh evaluation of the date.
    registry_digest: str | None = None

    @staticmethod
    def table_key(game_date: date, phase: int) -> str:
        found = _TABLE_KEYS.get((game_date, phase))
        if found is None:
            if len(_TABLE_KEYS) >= _TABLE_KEYS_MAX:
                _TABLE_KEYS.clear()
            found = _TABLE_KEYS[(game_date, phase)] = f"{game_date.isoformat()}:{phase}"
        return found

    @property
    def key(self) -> str:
        return self.table_key(self.game_date, self.phase)

    @property
    def received_since(self) -> datetime | None:
        """Where deadlines and cleanup count from: the first receive time (states written before
        it was kept: the first completion's timestamp)."""
        return self.first_received_at or self.first_completion_at

    def done(self) -> frozenset[str]:
        """Processors whose latest completion counts as done."""
        return frozenset(
            name for name, record in self.processors.items() if record.status in DONE_STATUSES
        )

    def has_seen(self, dedup_id: str) -> bool:
        return dedup_id in self.seen_ids

    def due_reruns(self, now: datetime) -> list[str]:
        return sorted(
            name
            for name, rerun in self.reruns.items()
            if rerun.next_due_at is not None and rerun.next_due_at <= now
        )

    def to_table(self) -> bytes:
        """JSON bytes for the table (raw serializer): pydantic-core writes them in one pass,
        several times faster than a dict dump followed by Faust's json codec."""
        return self.model_dump_json().encode()

    @classmethod
    def from_table(cls, value: bytes | str | dict[str, Any]) -> PhaseState:
        """A stored state: JSON bytes, or a dict (what older changelogs and tests hold)."""
        if isinstance(value, bytes | str):
            return cls.model_validate_json(value)
        return cls.model_validate(value)


TickKind = Literal["deadline", "rerun", "cleanup", "expire", "sla", "stall", "evaluate"]


class ReadinessTick(BaseModel):
    """Internal: "look at this date now". Sent by the timer, keyed by game date, so it is handled
    on the partition that owns the date, in stream context (table writes stay on the right
    changelog partition and inside the same transaction as the triggers they cause)."""

    model_config = ConfigDict(frozen=True)

    game_date: date
    kind: TickKind
    issued_at: datetime
