"""orjson codec for the event models: bytes on the wire, validated models in the code.

:func:`decode` is the single entrance for untrusted bytes. It raises nothing but
:class:`EventDecodeError`, whose ``reason`` is a sentence naming the field and the problem and whose
``error_type`` is a short code for metrics and dead letters, so a stream can dead-letter any bad
message without a catch-all.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final, Literal, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

DecodeErrorType = Literal[
    "oversized",
    "not_json",
    "not_utf8",
    "not_object",
    "missing_field",
    "unknown_phase",
    "naive_timestamp",
    "invalid_field",
]

M = TypeVar("M", bound=BaseModel)

# Pydantic error types we report under their own code; everything else is "invalid_field".
_OWN_CODES: Final[dict[str, DecodeErrorType]] = {
    "missing": "missing_field",
    "unknown_phase": "unknown_phase",
    "naive_timestamp": "naive_timestamp",
}
# Our validators already put the value in their message; pydantic's own messages do not.
_SELF_EXPLAINING: Final = frozenset(
    {
        "unknown_phase",
        "naive_timestamp",
        "invalid_timestamp",
        "invalid_date",
        "invalid_line",
        "invalid_identifier",
        "invalid_base64",
        "missing_line",
    }
)
_MAX_REPORTED_ERRORS: Final = 3


class EventDecodeError(ValueError):
    """Bytes that are not a valid event. ``reason`` is for people, ``error_type`` for machines."""

    def __init__(self, reason: str, error_type: DecodeErrorType | str) -> None:
        # error_type is a plain str so callers can add their own codes (e.g. unknown_processor);
        # decode() itself only uses the DecodeErrorType codes.
        super().__init__(reason)
        self.reason = reason
        self.error_type: str = error_type


class EventEncodeError(ValueError):
    """A model holding a value JSON cannot carry (e.g. an integer beyond 64 bits in metadata)."""


def _default(value: object) -> object:
    if isinstance(value, BaseModel):
        # As encode() writes it: orjson, not pydantic, formats dates and times.
        return value.model_dump(mode="python")
    if isinstance(value, Decimal):
        # A string, not a number: JSON readers would otherwise turn 25.5 into a binary float.
        return format(value, "f")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(value: object) -> bytes:
    """UTF-8 JSON of plain structures, models, Decimals (exact text) and sets (sorted): the one
    JSON writer of the wire format, shared by :func:`encode` and the Faust ``"orjson"`` codec
    (phaseflow.streams.core.codecs). Raises ``TypeError`` on anything else."""
    return orjson.dumps(value, default=_default)


def encode(model: BaseModel) -> bytes:
    """UTF-8 JSON of ``model``: dates ISO, datetimes RFC 3339 with offset, Decimals as strings."""
    try:
        return dumps(model.model_dump(mode="python"))
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise EventEncodeError(f"{type(model).__name__} cannot be encoded: {exc}") from exc


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _describe(error: ErrorDetails) -> str:
    kind = str(error["type"])
    where = _location(tuple(error["loc"]))
    if kind == "missing":
        what = "required field is missing"
    elif kind in _SELF_EXPLAINING:
        what = str(error["msg"])
    else:
        shown = repr(error.get("input"))
        shown = shown if len(shown) <= 60 else f"{shown[:57]}..."
        what = f"{error['msg']} (got {shown})"
    return f"{where}: {what}" if where else what


def _from_validation(exc: ValidationError) -> EventDecodeError:
    errors = exc.errors(include_url=False)
    parts = [_describe(error) for error in errors[:_MAX_REPORTED_ERRORS]]
    if len(errors) > _MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - _MAX_REPORTED_ERRORS} more")
    code = _OWN_CODES.get(str(errors[0]["type"]), "invalid_field") if errors else "invalid_field"
    return EventDecodeError("; ".join(parts), code)


def _is_utf8(data: bytes | bytearray | memoryview) -> bool:
    try:
        bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def decode(
    model_type: type[M], data: bytes | bytearray | memoryview, *, max_bytes: int | None = None
) -> M:
    """Parse and validate one event; raise only :class:`EventDecodeError`.

    ``max_bytes`` is checked before parsing, so an oversized payload costs no parse time.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EventDecodeError(f"expected bytes, got {type(data).__name__}", "not_json")
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if max_bytes is not None and size > max_bytes:
        raise EventDecodeError(
            f"payload is {size} bytes, more than the limit of {max_bytes}",
            "oversized",
        )
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if not _is_utf8(data):
            raise EventDecodeError("payload is not UTF-8 text", "not_utf8") from exc
        raise EventDecodeError(f"not valid JSON: {exc}", "not_json") from exc
    if not isinstance(obj, dict):
        raise EventDecodeError(
            f"expected a JSON object, got {type(obj).__name__}",
            "not_object",
        )
    try:
        return model_type.model_validate(obj)
    except ValidationError as exc:
        raise _from_validation(exc) from exc
