"""Where a consumed record came from, and turning a bad one into a dead letter."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

from models.events import DeadLetter


@dataclass(frozen=True)
class Origin:
    """The coordinates of a consumed record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None


def dead_letter(
    origin: Origin,
    raw: bytes,
    *,
    error: str,
    error_type: str,
    failed_at: datetime,
    attempts: int = 1,
) -> DeadLetter:
    """A DeadLetter that keeps the original bytes, so nothing is lost and it can be replayed."""
    return DeadLetter(
        source_topic=origin.topic,
        partition=origin.partition,
        offset=origin.offset,
        key=origin.key.decode("utf-8", errors="replace") if origin.key is not None else None,
        value=base64.b64encode(raw).decode("ascii"),
        error=error,
        error_type=error_type,
        attempts=attempts,
        failed_at=failed_at,
    )
