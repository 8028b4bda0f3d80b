"""Per ``(game_date, phase)`` readiness state, as kept in the changelogged readiness table."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Dedup ids remembered per (date, phase). A phase has a handful of processors with a few
# attempts each; the cap only bounds state if a publisher goes haywire with fresh ids.
MAX_SEEN_IDS = 512

DONE_STATUSES = frozenset({"success", "partial"})


class ProcessorRecord(BaseModel):
    """What is known of one processor's completions for one date."""

    model_config = ConfigDict(frozen=True)

    status: str
    record_count: int
    first_completed_at: datetime
    last_completed_at: datetime
    attempts: int = 1
    last_execution_id: str


class TriggerLedgerEntry(BaseModel):
    """The one ready/timeout trigger a phase may fire, kept so it is never fired twice."""

    model_config = ConfigDict(frozen=True)

    trigger_id: str
    reason: str
    rule: str
    triggered_at: datetime


class PhaseState(BaseModel):
    """Readiness of one phase of one game date."""

    model_config = ConfigDict(frozen=True)

    game_date: date
    phase: int
    processors: dict[str, ProcessorRecord] = Field(default_factory=dict)
    seen_ids: tuple[str, ...] = ()
    first_completion_at: datetime | None = None
    last_completion_at: datetime | None = None
    trigger: TriggerLedgerEntry | None = None

    @staticmethod
    def table_key(game_date: date, phase: int) -> str:
        return f"{game_date.isoformat()}:{phase}"

    @property
    def key(self) -> str:
        return self.table_key(self.game_date, self.phase)

    def done(self) -> frozenset[str]:
        """Processors whose latest completion counts as done."""
        return frozenset(
            name for name, record in self.processors.items() if record.status in DONE_STATUSES
        )

    def has_seen(self, dedup_id: str) -> bool:
        return dedup_id in self.seen_ids

    def to_table(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_table(cls, value: dict[str, Any]) -> PhaseState:
        return cls.model_validate(value)
