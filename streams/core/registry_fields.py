"""The registry's field types: how durations, local times and names are written in the file.

Each is a pydantic ``Annotated`` type whose validator raises a ``PydanticCustomError`` with a
message the loader (:mod:`phaseflow.streams.core.registry`) reports as is, after the field's path.
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BeforeValidator, Field, Strict
from pydantic_core import PydanticCustomError

_DURATION_RE: Final = re.compile(r"(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_LOCAL_TIME_RE: Final = re.compile(r"[0-9]{2}:[0-9]{2}(?::[0-9]{2})?")
_NAME_RE: Final = re.compile(r"[^:\s]+")


def parse_duration(value: object) -> timedelta:
    """``"90s"``, ``"30m"``, ``"4h"`` or combinations in that order (``"1h30m"``) as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        match = _DURATION_RE.fullmatch(value.strip())
        if match is not None and any(match.groups()):
            hours, minutes, seconds = (int(group or 0) for group in match.groups())
            return timedelta(hours=hours, minutes=minutes, seconds=seconds)
    raise PydanticCustomError(
        "duration", f"{value!r} is not a duration like '90s', '30m', '4h' or '1h30m'"
    )


def format_duration(value: timedelta) -> str:
    """The registry spelling of a duration, e.g. ``timedelta(minutes=90) -> "1h30m"``."""
    total = int(value.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    return "".join(parts) or "0s"


def _local_time(value: object) -> time:
    # TOML has a native local-time type (sla = 12:45:00); a string "12:45" is accepted too.
    if isinstance(value, time) and value.tzinfo is None:
        return value
    if isinstance(value, str) and _LOCAL_TIME_RE.fullmatch(value.strip()):
        try:
            return time.fromisoformat(value.strip())
        except ValueError:
            pass
    raise PydanticCustomError(
        "local_time", f"{value!r} is not a local time like '12:45' (pipeline time zone)"
    )


def _name(value: object) -> str:
    if isinstance(value, str) and _NAME_RE.fullmatch(value):
        return value
    raise PydanticCustomError(
        "name", f"{value!r} is not a name (non-empty text without ':' or blanks)"
    )


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise PydanticCustomError("duration", "must be longer than 0s")
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]
LocalTime = Annotated[time, BeforeValidator(_local_time)]
Name = Annotated[str, BeforeValidator(_name)]
Percent = Annotated[float, Strict(), Field(ge=0, le=100)]
Rule = Literal["all_complete", "critical_plus_majority"]
