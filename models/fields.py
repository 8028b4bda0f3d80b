"""Field types of the event models (docs/contract.md#events): parsing and validating dates,
timestamps, points lines, phases and identifiers, the enumerations and deterministic ids.

Every validator raises a ``PydanticCustomError`` whose message says what would have been
accepted; :mod:`phaseflow.models.codec` reports those messages unchanged. The models built from
these types are in :mod:`phaseflow.models.events`.

* ``game_date`` is ``YYYY-MM-DD`` and becomes a :class:`datetime.date`.
* Every timestamp (``timestamp`` and all ``*_at`` fields) is RFC 3339 *with* a time zone; a naive
  timestamp is rejected, because guessing its zone would silently shift deadlines by hours.
* Enumerations are ``Literal`` string types; their allowed values are exported as tuples
  (e.g. :data:`COMPLETION_STATUSES`) for callers and tests.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Final, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, Strict
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
_MINUTE: Final = timedelta(minutes=1)
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
    if offset % _MINUTE:
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
    # The zone matched +HH:MM or Z, so the offset is set and whole minutes: _check_offset would
    # pass it (it runs per event on the intake path).
    return parsed


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


def deterministic_id(*parts: object) -> str:
    """A deterministic id (uuid5 in :data:`ID_NAMESPACE`): the same parts give the same id."""
    return str(uuid.uuid5(ID_NAMESPACE, "|".join(str(part) for part in parts)))
