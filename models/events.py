"""Event models of the phaseflow contract (docs/contract.md#events).

All models are frozen pydantic v2 models. Field names follow the production completion messages so
existing publishers work unchanged. Validation is strict about types (``"5"`` is not a record count,
``true`` is not a phase) and every error message says what would have been accepted.

Conventions:

* Field types (dates, RFC 3339 timestamps with a zone, points lines, identifiers) and the
  enumerations are defined in :mod:`phaseflow.models.fields`.
* Unknown fields never fail: PhaseCompletion keeps them in ``metadata``, the others ignore them.
* Topic keys (docs/contract.md#topics) come from each model's ``key`` property; ids that must
  survive a retry unchanged come from the ``make_id`` class methods (uuid5, so a retry yields
  the same id).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, JsonValue, Strict, model_validator
from pydantic_core import PydanticCustomError

from phaseflow.models.fields import (
    DONE_STATUSES,
    AlertKind,
    CompletionStatus,
    Count,
    GameDate,
    Identifier,
    NonNegative,
    Phase,
    PointsLine,
    Recommendation,
    RerunReason,
    Severity,
    Text,
    Timestamp,
    TriggerReason,
    deterministic_id,
    line_text,
)


class Event(BaseModel):
    """Base of every event: frozen, unknown fields ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


# --- events ---------------------------------------------------------------------------------


class PhaseCompletion(Event):
    """A processor finished its work for a game date."""

    processor_name: Identifier
    game_date: GameDate
    phase: Phase
    status: CompletionStatus
    timestamp: Timestamp
    record_count: Count = 0
    execution_id: str | None = None
    correlation_id: str | None = None
    duration_seconds: NonNegative | None = None
    error_message: str | None = None
    error_type: str | None = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _unknown_into_metadata(cls, data: Any) -> Any:
        # Publishers add fields over time; keeping them costs nothing and loses nothing.
        if not isinstance(data, dict):
            return data
        # model_fields is rebuilt on every class access; look it up once per event.
        fields = cls.model_fields.keys()
        if fields >= data.keys():
            return data
        unknown = {k: v for k, v in data.items() if k not in fields}
        known = {k: v for k, v in data.items() if k in fields}
        metadata = known.get("metadata")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            return known  # metadata's own validation reports the problem
        return {**known, "metadata": {**unknown, **metadata}}  # existing keys win

    @property
    def key(self) -> str:
        """Topic key: the game date (one date's completions stay on one partition)."""
        return self.game_date.isoformat()

    @property
    def is_done(self) -> bool:
        """Whether this completion counts the processor as done (``success`` or ``partial``)."""
        return self.status in DONE_STATUSES

    @property
    def dedup_id(self) -> str:
        """Identity for deduplication: ``processor/execution_id/status`` (processors may share
        a workflow run id, and one run may report ``failed`` and then ``success``), or a hash
        when the publisher sent no ``execution_id``.

        The hash covers processor, date, status and the timestamp in UTC (so ``Z`` and ``+00:00``
        spellings of one instant agree): sha256, first 32 hex characters.
        """
        if self.execution_id:
            return f"{self.processor_name}/{self.execution_id}/{self.status}"
        basis = "|".join(
            (
                self.processor_name,
                self.game_date.isoformat(),
                self.status,
                self.timestamp.astimezone(UTC).isoformat(),
            )
        )
        return hashlib.sha256(basis.encode()).hexdigest()[:32]


class PhaseTrigger(Event):
    """Start of ``phase`` for a game date; ``completed``/``missing`` describe ``phase - 1``."""

    game_date: GameDate
    phase: Phase
    reason: TriggerReason
    rule: Text
    completed: list[Identifier] = Field(default_factory=list)
    missing: list[Identifier] = Field(default_factory=list)
    trigger_id: Text
    triggered_at: Timestamp
    correlation_id: str | None = None
    #: Each gated phase before ``phase`` -> its trigger's reason, or ``not_fired`` (upstream of
    #: an ``independent`` phase); see phaseflow.agents.phase_order.
    upstream: dict[str, str] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """Topic key ``{game_date}:{phase}`` (compacted: the latest trigger per phase stays)."""
        return f"{self.game_date.isoformat()}:{self.phase}"

    @classmethod
    def make_id(cls, game_date: date, phase: int, reason: str, nonce: str = "") -> str:
        """Deterministic trigger id: a retried publish of the same trigger has the same id.

        ``nonce`` tells apart deliberate repeats (e.g. the id of the rerun that re-opened the
        phase); ``ready``/``timeout`` triggers leave it empty since there is at most one of them.
        """
        return deterministic_id("trigger", game_date.isoformat(), phase, reason, nonce)


class RerunRequest(Event):
    """Ask a processor to run again for a game date."""

    game_date: GameDate
    phase: Phase
    processor_name: Identifier
    reason: RerunReason
    attempt: Annotated[int, Strict(), Field(ge=1)] = 1
    request_id: Text
    requested_by: Text
    requested_at: Timestamp

    @property
    def key(self) -> str:
        """Topic key ``{game_date}:{phase}:{processor}``."""
        return f"{self.game_date.isoformat()}:{self.phase}:{self.processor_name}"

    @classmethod
    def make_id(cls, game_date: date, phase: int, processor_name: str, attempt: int) -> str:
        """Deterministic request id: one id per (date, phase, processor, attempt)."""
        return deterministic_id("rerun", game_date.isoformat(), phase, processor_name, attempt)


class Alert(Event):
    """Something an operator should look at."""

    kind: AlertKind
    severity: Severity
    subject: Text
    message: Text
    details: dict[str, JsonValue] = Field(default_factory=dict)
    raised_at: Timestamp

    @property
    def key(self) -> str:
        """Topic key ``{kind}:{subject}``."""
        return f"{self.kind}:{self.subject}"


class DeadLetter(Event):
    """A message that could not be processed, with why.

    ``value`` is the original payload in standard base64 so any bytes survive JSON; ``key`` is the
    original key as text (phaseflow's keys are UTF-8; other bytes are replaced, see :meth:`wrap`).
    ``replay_of`` is set when the record that failed was sent by ``phaseflow dlq replay``: the id
    (``{dead_letters_topic}:{partition}:{offset}``) of the letter that replay sent. Letters
    written before it existed have none.
    """

    source_topic: Text
    partition: Count
    offset: Count
    key: str | None = None
    value: str
    error: Text
    error_type: Text
    attempts: Count = 1
    failed_at: Timestamp
    replay_of: Text | None = None

    @model_validator(mode="after")
    def _value_is_base64(self) -> DeadLetter:
        try:
            base64.b64decode(self.value, validate=True)
        except (binascii.Error, ValueError):
            raise PydanticCustomError(
                "invalid_base64", "value: the original payload must be standard base64"
            ) from None
        return self

    @property
    def value_bytes(self) -> bytes:
        """The original payload."""
        return base64.b64decode(self.value)

    @classmethod
    def wrap(
        cls,
        *,
        source_topic: str,
        partition: int,
        offset: int,
        key: bytes | str | None,
        value: bytes | None,
        error: str,
        error_type: str,
        failed_at: datetime,
        attempts: int = 1,
        replay_of: str | None = None,
    ) -> DeadLetter:
        """Build a dead letter from the raw key and value of a consumed message."""
        key_text = key.decode("utf-8", errors="replace") if isinstance(key, bytes) else key
        return cls(
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            key=key_text,
            value=base64.b64encode(value or b"").decode("ascii"),
            error=error,
            error_type=error_type,
            attempts=attempts,
            failed_at=failed_at,
            replay_of=replay_of,
        )


class PredictionRequest(Event):
    """One player to predict, published by the coordinator to the workers.

    ``line_values`` are the player's current points lines (exact decimals, possibly several from
    different books); empty means no line is posted yet (workers answer ``NO_LINE``).
    """

    request_id: Text
    batch_id: Text
    game_date: GameDate
    game_id: Text
    player_lookup: Identifier
    line_values: list[PointsLine] = Field(default_factory=list)
    requested_at: Timestamp
    correlation_id: str | None = None

    @property
    def key(self) -> str:
        """Topic key ``{game_date}:{player_lookup}``."""
        return f"{self.game_date.isoformat()}:{self.player_lookup}"

    @classmethod
    def make_id(cls, batch_id: str, game_date: date, player_lookup: str) -> str:
        """Deterministic request id: a re-published batch yields the same ids."""
        return deterministic_id(
            "prediction-request", batch_id, game_date.isoformat(), player_lookup
        )


class Prediction(Event):
    """One system's prediction for one player and line.

    ``current_points_line`` is a :class:`~decimal.Decimal` and is never rounded. It is read from a
    JSON string (exact) or a JSON number (exact for any line written with up to 15 significant
    digits), and :func:`phaseflow.models.codec.encode` writes it as a JSON *string* so no consumer
    parses it into a binary float. It may be absent only when ``recommendation`` is ``NO_LINE``.
    """

    prediction_id: Text
    game_date: GameDate
    game_id: Text
    player_lookup: Identifier
    system_id: Identifier
    current_points_line: PointsLine | None = None
    predicted_points: NonNegative
    confidence_score: Annotated[float, Strict(), Field(ge=0, le=100, allow_inf_nan=False)]
    recommendation: Recommendation
    model_version: Text
    batch_id: Text
    created_at: Timestamp

    @model_validator(mode="after")
    def _line_unless_no_line(self) -> Prediction:
        if self.current_points_line is None and self.recommendation != "NO_LINE":
            raise PydanticCustomError(
                "missing_line",
                f"current_points_line: required unless recommendation is 'NO_LINE' "
                f"(recommendation is {self.recommendation!r})",
            )
        return self

    @property
    def line_key(self) -> str:
        """The line as it appears in the key: :func:`line_text`, or ``NO_LINE`` without a line."""
        if self.current_points_line is None:
            return "NO_LINE"
        return line_text(self.current_points_line)

    @property
    def key(self) -> str:
        """Topic key ``{game_date}:{player_lookup}:{system_id}:{line}`` (see :func:`line_text`)."""
        return f"{self.game_date.isoformat()}:{self.player_lookup}:{self.system_id}:{self.line_key}"

    @classmethod
    def make_id(
        cls,
        batch_id: str,
        game_date: date,
        player_lookup: str,
        system_id: str,
        line: Decimal | None,
    ) -> str:
        """Deterministic prediction id: a worker retrying one request yields the same id."""
        line_part = "NO_LINE" if line is None else line_text(line)
        return deterministic_id(
            "prediction", batch_id, game_date.isoformat(), player_lookup, system_id, line_part
        )


#: Every event model, e.g. for codecs and property tests.
EVENT_MODELS: Final[tuple[type[Event], ...]] = (
    PhaseCompletion,
    PhaseTrigger,
    RerunRequest,
    Alert,
    DeadLetter,
    PredictionRequest,
    Prediction,
)
