"""``phaseflow replay --date D [--to D2] --registry NEW.toml [--json]``: a past day under a
changed registry, offline.

Reads the completions, triggers, rerun requests and alerts topics back from the log (no consumer
group, from the beginning to the end offsets taken when it starts; nothing is committed or
produced), runs the dates' completions through the readiness processor under ``NEW.toml`` on
their recorded receive times (phaseflow.agents.replay) and prints, per (date, phase), when it
started on the log and when it would start under ``NEW.toml``, and the reruns and alerts that
would differ (phaseflow.streams.replay_report). What it can and cannot tell: docs/readiness.md
"Replaying a day under another registry".
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Final, TextIO, TypeVar

from aiokafka.structs import ConsumerRecord
from pydantic import BaseModel

from phaseflow.agents.replay import RecordedCompletion, ReplaySettings, horizon, replay
from phaseflow.models.codec import EventDecodeError, decode
from phaseflow.models.events import Alert, PhaseTrigger, RerunRequest
from phaseflow.streams.cli_errors import BadInputError
from phaseflow.streams.core.envelope import Origin
from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName, spec
from phaseflow.streams.json_output import write_json
from phaseflow.streams.log_read import missing_topics, read_to_end
from phaseflow.streams.replay_report import (
    Comparison,
    compare,
    json_document,
    recorded_decisions,
    render_text,
)

_M = TypeVar("_M", bound=BaseModel)

#: What a replay reads: the completions it replays, and what the worker decided about them.
READ_TOPICS: Final = (
    TopicName.PHASE_COMPLETIONS,
    TopicName.PHASE_TRIGGERS,
    TopicName.RERUN_REQUESTS,
    TopicName.ALERTS,
)

#: The longest span one replay covers (each date is replayed tick by tick).
MAX_DAYS = 31


def replay_dates(start: date, end: date | None) -> tuple[date, ...]:
    """``--date`` to ``--to`` inclusive; a bad range is a :class:`BadInputError`."""
    last = end or start
    if last < start:
        raise BadInputError(f"--to {last} is before --date {start}")
    days = (last - start).days + 1
    if days > MAX_DAYS:
        raise BadInputError(f"--date {start} --to {last} spans {days} days; at most {MAX_DAYS}")
    return tuple(start + timedelta(days=n) for n in range(days))


def replay_settings(settings: Settings) -> ReplaySettings:
    return ReplaySettings(
        tick=timedelta(seconds=settings.readiness_tick_seconds),
        pipeline_timezone=settings.pipeline_timezone,
        max_message_bytes=settings.max_message_bytes,
        future_tolerance=timedelta(seconds=settings.future_timestamp_tolerance_seconds),
    )


def _record_time(record: ConsumerRecord[bytes, bytes]) -> datetime:
    """When the broker appended the record (the completions topic is LogAppendTime)."""
    return datetime.fromtimestamp(record.timestamp / 1000, UTC)


def _decoded(model: type[_M], records: list[ConsumerRecord[bytes, bytes]]) -> list[_M]:
    events = []
    for record in records:
        try:
            events.append(decode(model, record.value or b""))
        except EventDecodeError:
            continue  # not the worker's: a dead letter of its own topic, never a decision
    return events


async def replay_command(
    settings: Settings,
    *,
    dates: tuple[date, ...],
    registry_path: Path,
    out: TextIO,
    as_json: bool = False,
) -> Comparison:
    """Replay ``dates`` under the registry at ``registry_path``, print the report, return it."""
    registry = load_registry(registry_path)  # a bad file fails before the broker is asked
    missing = await missing_topics(settings, *READ_TOPICS)
    if missing:
        raise BadInputError(
            f"no topic {', '.join(missing)} on the cluster: nothing to replay (check "
            "PHASEFLOW_TOPIC_PREFIX; a worker creates the topics when it starts)"
        )
    log_end = datetime.now(UTC)
    topics = READ_TOPICS
    records = await read_to_end(settings, *topics)
    by_topic = {topic: [r for r in records if r.topic == settings.topic(topic)] for topic in topics}
    keys = {day.isoformat().encode() for day in dates}
    completions = [
        RecordedCompletion(record.value or b"", _record_time(record), Origin.of(record))
        for record in by_topic[TopicName.PHASE_COMPLETIONS]
        if record.key in keys
    ]
    if not completions:
        raise BadInputError(_nothing_to_replay(settings, dates))
    until = max(c.received_at for c in completions) + horizon(registry)
    outcome = await replay(registry, completions, settings=replay_settings(settings), until=until)
    recorded = recorded_decisions(
        dates,
        _decoded(PhaseTrigger, by_topic[TopicName.PHASE_TRIGGERS]),
        _decoded(RerunRequest, by_topic[TopicName.RERUN_REQUESTS]),
        _decoded(Alert, by_topic[TopicName.ALERTS]),
    )
    comparison = compare(
        dates=dates,
        registry=str(registry_path),
        completions=len(completions),
        log_end=log_end,
        replayed_until=until,
        recorded=recorded,
        outcome=outcome,
    )
    if as_json:
        write_json(out, json_document(comparison))
    else:
        out.writelines(line + "\n" for line in render_text(comparison))
    return comparison


def _nothing_to_replay(settings: Settings, dates: tuple[date, ...]) -> str:
    days = dates[0].isoformat() if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    kept = spec(TopicName.PHASE_COMPLETIONS).retention
    how_long = f"completions are kept {kept.days} days" if kept else "check the date"
    return (
        f"no completions of {days} on {settings.topic(TopicName.PHASE_COMPLETIONS)}: nothing to "
        f"replay ({how_long})"
    )


def run_replay(
    settings: Settings,
    *,
    start: date,
    end: date | None,
    registry_path: Path,
    as_json: bool = False,
    out: TextIO | None = None,
) -> int:
    """``phaseflow replay``: 0 with the report on stdout; no records is exit 2 (one line)."""
    dates = replay_dates(start, end)
    asyncio.run(
        replay_command(
            settings,
            dates=dates,
            registry_path=registry_path,
            out=out or sys.stdout,
            as_json=as_json,
        )
    )
    return 0
