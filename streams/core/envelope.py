"""Where a consumed record came from, and turning a bad one into a dead letter."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from phaseflow.models.events import DeadLetter

#: Header ``phaseflow dlq replay`` puts on each record it sends back: the id of the letter it
#: replays. A replayed record that fails again names it in its new letter's ``replay_of``, so
#: the next replay can tell a failed replay from a new failure.
REPLAY_OF_HEADER: Final = "phaseflow-replay-of"


@dataclass(frozen=True)
class Origin:
    """The coordinates of a consumed record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    replay_of: str | None = None  # the REPLAY_OF_HEADER of the record, if any

    @classmethod
    def of(cls, record: Any) -> Origin:
        """The origin of an aiokafka ``ConsumerRecord`` or a Faust ``Message`` (both carry
        topic, partition, offset, key and headers)."""
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            replay_of_header(record.headers),
        )


def replay_of_header(
    headers: Iterable[tuple[str, bytes | None]] | Mapping[str, bytes | None] | None,
) -> str | None:
    """The REPLAY_OF_HEADER value of a record's headers (a list of pairs or a mapping)."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if name == REPLAY_OF_HEADER and value:
            return value.decode("utf-8", errors="replace")
    return None


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
        replay_of=origin.replay_of,
    )
