"""What the prediction coordinator keeps and answers: batch and date state (the
``prediction_batches`` table values), command results, and the coordinator's identity as a
phase-5 processor.

Plain models and helpers, no I/O: the state machine is ``phaseflow.agents.predictions.coordinator``,
the request/reply client ``phaseflow.agents.predictions.coordinator_client``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, JsonValue

PROCESSOR: Final = "prediction_coordinator"
PHASE: Final = 5
#: Command ids remembered per date (duplicates older than this many commands are not detected).
MAX_COMMAND_IDS: Final = 200

ResultStatus = Literal[
    "started",
    "resent",
    "already_running",
    "already_complete",
    "completed",
    "not_running",
    "failed",
    "duplicate",
    "checked",
]


class BatchAlreadyRunningError(ValueError):
    """A batch of the date is running (the HTTP API answers 409)."""


class BatchNotRunningError(ValueError):
    """``complete`` for a date without a running batch (the HTTP API answers 409)."""


#: Why a batch produced nothing (``PhaseCompletion.error_type`` of its failed completion).
FailureReason = Literal["no_slate", "no_lines", "no_systems", "no_predictions", "deadline"]


class BatchState(BaseModel):
    """One batch of one date."""

    model_config = ConfigDict(frozen=True)

    batch_id: str
    run: int
    status: Literal["running", "complete", "failed"]
    expected_players: int
    completed_players: int = 0
    total_predictions: int = 0
    started_at: datetime
    last_progress_at: datetime
    completed_at: datetime | None = None
    completion_reason: str | None = None
    #: Why a ``failed`` batch failed, in words (also the completion's ``error_message``).
    failure: str | None = None
    #: When it ends at the latest (None in states written before deadlines existed).
    deadline_at: datetime | None = None
    source: str
    requested_by: str
    created_by: str  # the command that started it (a redelivery of it re-sends the requests)
    stalled_at: datetime | None = None  # stalled below min_coverage_pct: alerted at
    #: Every request was acknowledged by the broker; a redelivered start then re-sends nothing.
    requests_sent: bool = False

    @property
    def coverage_pct(self) -> float:
        if self.expected_players == 0:
            return 100.0
        return 100.0 * self.completed_players / self.expected_players


class DateState(BaseModel):
    """Everything the coordinator keeps for one game date (table value, JSON)."""

    model_config = ConfigDict(frozen=True)

    game_date: date
    runs: int = 0
    current: BatchState | None = None
    #: Ids of the batches that ended (complete or failed): an explicit id is not reused.
    completed: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()

    @property
    def running(self) -> BatchState | None:
        return (
            self.current if self.current is not None and self.current.status == "running" else None
        )

    def seen(self, command_id: str) -> DateState:
        commands = (*self.commands, command_id)[-MAX_COMMAND_IDS:]
        return self.model_copy(update={"commands": commands})


@dataclass(frozen=True)
class CommandResult:
    """What a command did; ``as_json()`` is the HTTP API's ``result``."""

    status: ResultStatus
    game_date: date
    batch_id: str | None
    expected_players: int = 0
    completed_players: int = 0
    total_predictions: int = 0
    message: str = ""

    def as_json(self) -> dict[str, JsonValue]:
        return {
            "status": self.status,
            "game_date": self.game_date.isoformat(),
            "batch_id": self.batch_id,
            "expected_players": self.expected_players,
            "completed_players": self.completed_players,
            "total_predictions": self.total_predictions,
            "message": self.message,
        }

    @classmethod
    def of(
        cls, status: ResultStatus, batch: BatchState, game_date: date, message: str = ""
    ) -> CommandResult:
        return cls(
            status=status,
            game_date=game_date,
            batch_id=batch.batch_id,
            expected_players=batch.expected_players,
            completed_players=batch.completed_players,
            total_predictions=batch.total_predictions,
            message=message,
        )


def batch_result(batch: BatchState) -> ResultStatus:
    """A command's answer for a batch it ended."""
    return "failed" if batch.status == "failed" else "completed"


@dataclass
class CoordinatorStats:
    commands: int = 0
    requests_published: int = 0
    done_counted: int = 0
    done_ignored: int = 0
    completions: int = 0
    dead_letters: int = 0


def default_batch_id(game_date: date, run: int) -> str:
    """``{game_date}-r{run}``: the n-th batch of a date."""
    return f"{game_date.isoformat()}-r{run}"


def marker_key(game_date: date, batch_id: str, player_lookup: str) -> str:
    """Key of a (date, batch, player) "done" marker (player lookups never contain '|'; the date
    is part of it because an explicit batch id may be used again on another date)."""
    return f"{game_date.isoformat()}|{batch_id}|{player_lookup}"


def batch_ends_at(batch: BatchState, batch_deadline: timedelta) -> datetime:
    """When ``batch`` ends at the latest (``batch_deadline`` after its start for a state written
    before deadlines were kept)."""
    return batch.deadline_at or batch.started_at + batch_deadline
