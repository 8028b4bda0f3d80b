"""``phaseflow tail [--date D] [--topics triggers,alerts,reruns,dead-letters]``: follow the
pipeline from a terminal, one line per event as it happens.

It reads with no consumer group and commits nothing (``committed_reader``: group_id=None, so
aiokafka assigns itself every partition), positioned at the end of each partition when it
starts: no worker's group is touched and what it shows is what is published from then on.
``--date`` keeps the events of one game date (triggers and reruns by ``game_date``, alerts by a
subject starting with the date, dead letters by the original record's key).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final, TextIO

from aiokafka.structs import ConsumerRecord

from phaseflow.models.codec import EventDecodeError, decode
from phaseflow.models.events import Alert, DeadLetter, PhaseTrigger, RerunRequest
from phaseflow.streams.core.lifecycle import AsyncService
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import (
    CommittedReader,
    TopicName,
    ensure_topics,
    until_assigned,
)

_ERROR_WIDTH: Final = 80
_ASSIGN_TIMEOUT_SECONDS: Final = 30.0


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clip(text: str, width: int = _ERROR_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _trigger(event: Any) -> str:
    trigger: PhaseTrigger = event
    line = (
        f"{_at(trigger.triggered_at)} trigger     {trigger.game_date} phase {trigger.phase} "
        f"{trigger.reason} ({trigger.rule})"
    )
    return line + (f" without {', '.join(trigger.missing)}" if trigger.missing else "")


def _alert(event: Any) -> str:
    alert: Alert = event
    return (
        f"{_at(alert.raised_at)} alert       {alert.severity} {alert.kind} {alert.subject}: "
        f"{_clip(alert.message)}"
    )


def _rerun(event: Any) -> str:
    rerun: RerunRequest = event
    return (
        f"{_at(rerun.requested_at)} rerun       {rerun.game_date} phase {rerun.phase} "
        f"{rerun.processor_name} ({rerun.reason}, attempt {rerun.attempt}, "
        f"by {rerun.requested_by})"
    )


def _dead_letter(event: Any) -> str:
    letter: DeadLetter = event
    return (
        f"{_at(letter.failed_at)} dead-letter {letter.source_topic}[{letter.partition}]"
        f"@{letter.offset} {letter.error_type}: {_clip(letter.error)}"
    )


def _on_date(event: Any, game_date: date) -> bool:
    if isinstance(event, PhaseTrigger | RerunRequest):
        return event.game_date == game_date
    if isinstance(event, Alert):
        return event.subject.startswith(game_date.isoformat())
    if isinstance(event, DeadLetter):
        return event.key == game_date.isoformat()
    return False


@dataclass(frozen=True)
class TailTopic:
    """A topic ``tail`` can follow: its catalog name, event model and one-line format."""

    topic: TopicName
    model: type[Any]
    line: Callable[[Any], str]


#: ``--topics`` names, in the default order.
TOPICS: Final = {
    "triggers": TailTopic(TopicName.PHASE_TRIGGERS, PhaseTrigger, _trigger),
    "alerts": TailTopic(TopicName.ALERTS, Alert, _alert),
    "reruns": TailTopic(TopicName.RERUN_REQUESTS, RerunRequest, _rerun),
    "dead-letters": TailTopic(TopicName.DEAD_LETTERS, DeadLetter, _dead_letter),
}


def parse_topics(text: str) -> tuple[str, ...]:
    """``triggers,alerts`` -> its names; ValueError naming the unknown one and the choices."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in TOPICS]
    if unknown or not names:
        raise ValueError(
            f"unknown topic {unknown[0]!r}; choose from {','.join(TOPICS)}"
            if unknown
            else f"name at least one of {','.join(TOPICS)}"
        )
    return tuple(dict.fromkeys(names))


def format_record(
    settings: Settings,
    record: ConsumerRecord[bytes, bytes],
    *,
    game_date: date | None = None,
    max_bytes: int = 1_000_000,
) -> str | None:
    """The line of one record, or None when ``game_date`` filters it out (or it is a tombstone).
    A record that does not decode is shown as such, not skipped: tail is for seeing what is there.
    """
    if record.value is None:
        return None
    kind = next(tail for tail in TOPICS.values() if settings.topic(tail.topic) == record.topic)
    try:
        event = decode(kind.model, record.value, max_bytes=max_bytes)
    except EventDecodeError as error:
        if game_date is not None:
            return None
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        return f"{'?':20} undecodable {where}: {_clip(error.reason)}"
    if game_date is not None and not _on_date(event, game_date):
        return None
    return kind.line(event)


class Tail(AsyncService):
    """The records of ``topics`` published from :meth:`start` on, no group, nothing committed."""

    def __init__(self, settings: Settings, topics: Sequence[str]) -> None:
        self._settings = settings
        self._topics = [TOPICS[name].topic for name in topics]
        self._reader = CommittedReader(settings, *self._topics, offset_reset="latest")

    async def start(self) -> None:
        """Returns once every partition is positioned at its end: from here on nothing is
        missed."""
        await ensure_topics(self._settings)  # a missing topic must not be auto-created
        consumer = await self._reader.start()
        wanted = {self._settings.topic(topic) for topic in self._topics}
        try:
            await until_assigned(consumer, wanted, time.monotonic() + _ASSIGN_TIMEOUT_SECONDS)
            for partition in consumer.assignment():
                await consumer.position(partition)  # resolves "latest" now
        except BaseException:
            await self._reader.stop()  # `async with` does not stop what failed to start
            raise

    async def stop(self) -> None:
        await self._reader.stop()

    async def read(self, wait_seconds: float) -> list[ConsumerRecord[bytes, bytes]]:
        """Records that arrived within ``wait_seconds``, in order per partition."""
        batches = await self._reader.consumer.getmany(timeout_ms=int(wait_seconds * 1000))
        return [record for records in batches.values() for record in records]


async def tail_command(
    settings: Settings,
    *,
    topics: Sequence[str],
    game_date: date | None,
    out: TextIO,
    stop: asyncio.Event | None = None,
    started: asyncio.Event | None = None,
) -> int:
    """Print one line per event until ``stop`` is set (the CLI: until Ctrl-C); ``started`` is
    set once the tail is positioned (tests publish after it)."""
    stop = stop or asyncio.Event()
    async with Tail(settings, topics) as tail:
        scope = f" for {game_date}" if game_date is not None else ""
        out.write(f"following {', '.join(topics)}{scope} (Ctrl-C ends)\n")
        out.flush()
        if started is not None:
            started.set()
        while not stop.is_set():
            for record in await tail.read(0.5):
                line = format_record(
                    settings, record, game_date=game_date, max_bytes=settings.max_message_bytes
                )
                if line is not None:
                    out.write(line + "\n")
            out.flush()
    return 0


def run_tail(
    settings: Settings,
    *,
    topics: Sequence[str] = tuple(TOPICS),
    game_date: date | None = None,
    out: TextIO | None = None,
) -> int:
    """``phaseflow tail``: follows until Ctrl-C, which ends it with exit 0."""
    try:
        return asyncio.run(
            tail_command(settings, topics=topics, game_date=game_date, out=out or sys.stdout)
        )
    except KeyboardInterrupt:
        return 0
