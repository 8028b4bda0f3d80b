"""Event models of the phaseflow contract (docs/contract.md#events).

All models are frozen pydantic v2 models. Field names follow the production completion messages so
existing publishers work unchanged. Validation is strict about types (``"5"`` is not a record count,
``true`` is not a phase) and every error message says what would have been accepted.

Conventions:

* ``game_date`` is ``YYYY-MM-DD`` and becomes a :class:`datetime.date`.
* Every timestamp (``timestamp`` and all ``*_at`` fields) is RFC 3339 *with* a time zone; a naive
  timestamp is rejected, because guessing its zone would silently shift deadlines by hours.
* Enumerations are ``Literal`` string types; their allowed values are exported as tuples
  (e.g. :data:`COMPLETION_STATUSES`) for callers and tests.
* Unknown fields never fail: PhaseCompletion keeps them in ``metadata``, the others ignore them.
* Topic keys (docs/contract.md#topics) come from each model's ``key`` property; ids that must
  survive a retry unchanged come from the ``make_id`` class methods (uuid5, so a retry yields
  the same id).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    Strict,
    model_validator,
)
from pydantic_core import PydanticCustomError

from phaseflow.models.phases import UnknownPhaseError, parse_phase

#: Namespace of every deterministic id phaseflow makes (uuid5).
ID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://phaseflow.invalid/ids")

_SAMPLE_TIMESTAMP: Final = "2024-01-15T18:30:00Z"
_DATE_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# RFC 3339 section 5.6; a space instead of "T" is allowed by its note and common in logs.
_TIMESTAMP_RE: Final = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]+))?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
_IDENTIFIER_RE: Final = re.compile(r"[^:\s]+")
_MAX_LINE: Final = Decimal(1000)
# BigQuery NUMERIC keeps 9 decimal places; a line with more could not be stored exactly.
_MAX_LINE_PLACES: Final = 9


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


# --- field types ----------------------------------------------------------------------------


def _to_game_date(value: object) -> date:
    # datetime is a subclass of date; accepting it would silently drop the time and zone.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_RE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError(
                "invalid_date", f"{_short(value)} is not a calendar date (YYYY-MM-DD)"
            ) from None
    raise PydanticCustomError(
        "invalid_date", f"{_short(value)} is not a date written YYYY-MM-DD, e.g. '2024-01-15'"
    )


def _naive(value: object) -> PydanticCustomError:
    return PydanticCustomError(
        "naive_timestamp",
        f"timestamp {_short(value)} has no time zone; write it as RFC 3339 with 'Z' or an "
        f"offset, e.g. {_SAMPLE_TIMESTAMP!r}",
    )


def _check_offset(value: datetime) -> datetime:
    offset = value.utcoffset()
    if offset is None:
        raise _naive(value)
    if offset % timedelta(minutes=1):
        # RFC 3339 offsets are whole minutes; anything else could not be written back exactly.
        raise PydanticCustomError(
            "invalid_timestamp",
            f"timestamp {_short(value)} has an offset that is not whole minutes",
        )
    return value


def _to_timestamp(value: object) -> datetime:
    if isinstance(value, datetime):
        return _check_offset(value)
    if not isinstance(value, str):
        raise PydanticCustomError(
            "invalid_timestamp",
            f"expected an RFC 3339 timestamp string such as {_SAMPLE_TIMESTAMP!r}, "
            f"got {type(value).__name__} {_short(value)}",
        )
    match = _TIMESTAMP_RE.fullmatch(value)
    if match is None:
        raise PydanticCustomError(
            "invalid_timestamp",
            f"{_short(value)} is not an RFC 3339 timestamp such as {_SAMPLE_TIMESTAMP!r}",
        )
    day, clock, fraction, zone = match.groups()
    if zone is None:
        raise _naive(value)
    # fromisoformat wants at most 6 fraction digits; finer than microseconds cannot be kept anyway.
    micro = f".{fraction[:6].ljust(6, '0')}" if fraction else ""
    offset = "+00:00" if zone in "Zz" else zone
    try:
        parsed = datetime.fromisoformat(f"{day}T{clock}{micro}{offset}")
    except ValueError:
        raise PydanticCustomError(
            "invalid_timestamp", f"{_short(value)} is not a real date and time"
        ) from None
    return _check_offset(parsed)


def _to_line(value: object) -> Decimal:
    if isinstance(value, bool):
        raise PydanticCustomError("invalid_line", f"a points line must be a number, got {value!r}")
    number: Decimal
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError(
                "invalid_line", f"a points line must be finite, got {value!r}"
            )
        # repr() is the shortest text that reads back as this float, i.e. the text the publisher
        # wrote for any line with up to 15 significant digits.
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise PydanticCustomError(
                "invalid_line", f"{_short(value)} is not a decimal number such as '25.5'"
            ) from None
    else:
        raise PydanticCustomError(
            "invalid_line",
            f"a points line must be a number or a decimal string, got {type(value).__name__}",
        )
    if not number.is_finite():
        raise PydanticCustomError("invalid_line", f"a points line must be finite, got {value!r}")
    if number < 0 or number > _MAX_LINE:
        raise PydanticCustomError(
            "invalid_line", f"a points line must be between 0 and {_MAX_LINE}, got {_short(value)}"
        )
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -_MAX_LINE_PLACES:
        raise PydanticCustomError(
            "invalid_line",
            f"a points line has at most {_MAX_LINE_PLACES} decimal places, got {_short(value)}",
        )
    # "-0" and "0" are the same line; keep one spelling so keys match.
    return number.copy_abs() if number.is_zero() else number


def _check_identifier(value: str) -> str:
    if not _IDENTIFIER_RE.fullmatch(value):
        raise PydanticCustomError(
            "invalid_identifier",
            f"{_short(value)} must be non-empty without ':' or blanks (it is part of a topic key)",
        )
    return value


def _to_phase(value: object) -> int:
    try:
        return parse_phase(value)
    except UnknownPhaseError as exc:
        raise PydanticCustomError("unknown_phase", str(exc)) from None


def line_text(line: Decimal) -> str:
    """Canonical text of a points line, used in topic keys.

    Plain notation (never an exponent), trailing zeros removed but always at least one decimal
    place: ``25.5 -> "25.5"``, ``26 / 26.0 / 26.00 -> "26.0"``, ``25.250 -> "25.25"``. Publishers
    that write the same line differently therefore produce the same key, so compaction keeps one
    prediction per line.
    """
    text = format(line.normalize(), "f")
    return text if "." in text else f"{text}.0"


GameDate = Annotated[date, BeforeValidator(_to_game_date)]
Timestamp = Annotated[datetime, BeforeValidator(_to_timestamp)]
#: An exact points line (see :func:`line_text`); JSON output writes it as a string.
PointsLine = Annotated[
    Decimal,
    BeforeValidator(_to_line),
    PlainSerializer(lambda v: format(v, "f"), return_type=str, when_used="json"),
]
Phase = Annotated[int, BeforeValidator(_to_phase)]
#: A name that appears inside a topic key, so it may not contain ':' (the key separator).
Identifier = Annotated[str, Strict(), AfterValidator(_check_identifier)]
Text = Annotated[str, Strict(), Field(min_length=1)]
Count = Annotated[int, Strict(), Field(ge=0)]
NonNegative = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]

CompletionStatus = Literal["success", "partial", "failed", "skipped"]
TriggerReason = Literal["ready", "timeout", "rerun", "manual"]
RerunReason = Literal[
    "failed", "missing_at_deadline", "validation_failed", "cleanup", "manual", "backfill"
]
AlertKind = Literal[
    "phase_timeout",
    "validation_failed",
    "consumer_lag",
    "dlq",
    "sla_breach",
    "circuit_open",
    "processor_slowdown",
    "phase_stalled",
    "orphan_state",
]
Severity = Literal["info", "warning", "critical"]
Recommendation = Literal["OVER", "UNDER", "PASS", "NO_LINE"]

COMPLETION_STATUSES: Final[tuple[str, ...]] = get_args(CompletionStatus)
#: Statuses that count a processor as done for the trigger rules.
DONE_STATUSES: Final = frozenset({"success", "partial"})
TRIGGER_REASONS: Final[tuple[str, ...]] = get_args(TriggerReason)
RERUN_REASONS: Final[tuple[str, ...]] = get_args(RerunReason)
ALERT_KINDS: Final[tuple[str, ...]] = get_args(AlertKind)
SEVERITIES: Final[tuple[str, ...]] = get_args(Severity)
RECOMMENDATIONS: Final[tuple[str, ...]] = get_args(Recommendation)


def _make_id(*parts: object) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, "|".join(str(part) for part in parts)))


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
        return _make_id("trigger", game_date.isoformat(), phase, reason, nonce)


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
        return _make_id("rerun", game_date.isoformat(), phase, processor_name, attempt)


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
        return _make_id("prediction-request", batch_id, game_date.isoformat(), player_lookup)


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
        return _make_id(
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
