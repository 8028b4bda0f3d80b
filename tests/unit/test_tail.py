"""``phaseflow tail``: topic selection, one line per event, the ``--date`` filter."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aiokafka.structs import ConsumerRecord

from phaseflow.models.codec import encode
from phaseflow.models.events import DeadLetter
from phaseflow.streams.cli import _parser, main
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.tail import TOPICS, format_record, parse_topics
from tests.fixtures.readiness_harness import GAME_DATE, NOW, Harness
from tests.unit.test_source_fallbacks import FALLBACK, OTHER, PRIMARY, registry

SETTINGS = Settings(topic_prefix="pf")


def record(topic: TopicName, value: bytes | None, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=SETTINGS.topic(topic),
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value or b""),
        headers=(),
    )


def test_parse_topics() -> None:
    assert parse_topics("alerts, triggers,alerts") == ("alerts", "triggers")
    with pytest.raises(ValueError, match="unknown topic 'trigger'; choose from triggers,alerts"):
        parse_topics("trigger")
    with pytest.raises(ValueError, match="name at least one of"):
        parse_topics(" , ")


def test_cli_defaults_to_every_topic_and_rejects_an_unknown_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = _parser().parse_args(["tail", "--date", "2026-03-10"])
    assert (args.topics, args.date) == (tuple(TOPICS), GAME_DATE)
    with pytest.raises(SystemExit) as exited:
        main(["tail", "--topics", "triggers,nope"])
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()[-1:]
    assert "unknown topic 'nope'" in line


async def _a_day() -> Harness:
    """A stalled phase 2 (alert, reruns) met at last by its fallback (trigger)."""
    h = Harness(registry('stall_after = "2h"'))
    await h.complete(OTHER, 2)
    await h.advance(timedelta(hours=2))
    await h.complete(FALLBACK, 2)
    return h


async def test_one_line_per_event_of_each_kind() -> None:
    h = await _a_day()
    [trigger] = h.publisher.triggers()
    stall = next(a for a in h.publisher.alerts() if a.kind == "phase_stalled")
    rerun = next(r for r in h.publisher.reruns() if r.processor_name == PRIMARY)
    letter = DeadLetter.wrap(
        source_topic="pf.phase-completions",
        partition=1,
        offset=9,
        key=GAME_DATE.isoformat().encode(),
        value=b"nope",
        error="not JSON\nat all",
        error_type="not_json",
        failed_at=NOW,
    )
    lines = [
        format_record(SETTINGS, record(TopicName.PHASE_TRIGGERS, encode(trigger))),
        format_record(SETTINGS, record(TopicName.ALERTS, encode(stall))),
        format_record(SETTINGS, record(TopicName.RERUN_REQUESTS, encode(rerun))),
        format_record(SETTINGS, record(TopicName.DEAD_LETTERS, encode(letter))),
    ]
    at = (NOW + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cleanup_at = rerun.requested_at.strftime("%Y-%m-%dT%H:%M:%SZ")  # its first scan
    assert lines[0] == f"{at} trigger     2026-03-10 phase 3 ready (all_complete)"
    assert lines[1] is not None
    assert lines[1].startswith(f"{at} alert       warning phase_stalled 2026-03-10:phase_2: ")
    assert lines[2] == (
        f"{cleanup_at} rerun       2026-03-10 phase 2 {PRIMARY} (cleanup, attempt 1, by phaseflow)"
    )
    assert lines[3] == (
        "2026-03-11T09:00:00Z dead-letter pf.phase-completions[1]@9 not_json: not JSON at all"
    )
    assert all(line is not None and "\n" not in line for line in lines)


async def test_date_filter_keeps_the_events_of_that_date() -> None:
    h = await _a_day()
    [trigger] = h.publisher.triggers()
    stall = next(a for a in h.publisher.alerts() if a.kind == "phase_stalled")
    raw = [
        record(TopicName.PHASE_TRIGGERS, encode(trigger)),
        record(TopicName.ALERTS, encode(stall)),
    ]
    assert all(format_record(SETTINGS, r, game_date=GAME_DATE) for r in raw)
    other_day = GAME_DATE + timedelta(days=1)
    assert [format_record(SETTINGS, r, game_date=other_day) for r in raw] == [None, None]


def test_an_undecodable_record_is_shown_not_skipped() -> None:
    line = format_record(SETTINGS, record(TopicName.ALERTS, b"{oops", offset=4))
    assert line is not None
    assert "undecodable pf.alerts[0]@4: " in line
    assert format_record(SETTINGS, record(TopicName.ALERTS, None)) is None  # a tombstone
