"""ReadinessProcessor without a broker: a dict as its table, a list as its publisher."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from phaseflow.agents.readiness import ReadinessProcessor
from phaseflow.models.codec import encode
from phaseflow.streams.core.clock import ManualClock
from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.simulation import make_completion
from tests.fixtures.readiness_harness import GAME_DATE, NOW, ORIGIN, RecordingPublisher


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def processor(publisher: RecordingPublisher, clock: ManualClock) -> ReadinessProcessor:
    return ReadinessProcessor(
        registry=load_registry(None),
        table={},
        publisher=publisher,
        clock=clock,
        pipeline_timezone="America/New_York",
        max_message_bytes=10_000,
    )


async def feed(
    processor: ReadinessProcessor, processor_name: str, phase: int, **kw: object
) -> None:
    event = make_completion(processor_name, GAME_DATE, phase, at=NOW, **kw)  # type: ignore[arg-type]
    await processor.handle(encode(event), ORIGIN)


PHASE2_REQUIRED = ["p2_odds_game_lines", "p2_nbacom_gamebook_pdf", "p2_nbacom_boxscores"]


async def test_all_required_processors_fire_the_next_phase_once(
    processor: ReadinessProcessor, publisher: RecordingPublisher
) -> None:
    for name in PHASE2_REQUIRED:
        await feed(processor, name, 2)
    await feed(processor, "p2_bigdataball_pbp", 2)  # optional, after the fact
    [trigger] = publisher.triggers()
    assert trigger.phase == 3
    assert trigger.reason == "ready"
    assert trigger.rule == "all_complete"
    assert sorted(trigger.completed) == sorted(PHASE2_REQUIRED)
    assert trigger.missing == []
    assert trigger.key == "2026-03-10:3"


async def test_a_missing_required_processor_holds_the_phase(
    processor: ReadinessProcessor, publisher: RecordingPublisher
) -> None:
    for name in PHASE2_REQUIRED[:2]:
        await feed(processor, name, 2)
    await feed(processor, "p2_odds_player_props", 2)  # optional ones never stand in
    assert publisher.triggers() == []


async def test_duplicates_do_not_fire_twice(
    processor: ReadinessProcessor, publisher: RecordingPublisher
) -> None:
    events = [make_completion(name, GAME_DATE, 2, at=NOW) for name in PHASE2_REQUIRED]
    for event in [*events, *events, events[0]]:
        await processor.handle(encode(event), ORIGIN)
    # a fresh execution of an already-done processor after the trigger fired
    await feed(processor, PHASE2_REQUIRED[0], 2)
    assert len(publisher.triggers()) == 1


async def test_failed_status_is_not_done(
    processor: ReadinessProcessor, publisher: RecordingPublisher
) -> None:
    await feed(processor, PHASE2_REQUIRED[0], 2, status="failed")
    for name in PHASE2_REQUIRED[1:]:
        await feed(processor, name, 2)
    assert publisher.triggers() == []
    await feed(processor, PHASE2_REQUIRED[0], 2, status="partial")
    assert len(publisher.triggers()) == 1


async def test_critical_plus_majority_overnight(
    processor: ReadinessProcessor, publisher: RecordingPublisher
) -> None:
    for name in PHASE2_REQUIRED:  # phase order: phase 3 fires once phase 2 has
        await feed(processor, name, 2)
    publisher.sent.clear()
    await feed(processor, "player_game_summary", 3)
    await feed(processor, "upcoming_player_game_context", 3)
    assert publisher.triggers() == []  # critical done, but 2/5 = 40 % < 60 %
    await feed(processor, "team_defense_game_summary", 3)
    [trigger] = publisher.triggers()
    assert trigger.phase == 4
    assert trigger.rule == "critical_plus_majority"
    assert sorted(trigger.missing) == ["team_offense_game_summary", "upcoming_team_game_context"]


async def test_same_day_phase3_waits_only_for_pregame_processor(
    publisher: RecordingPublisher, clock: ManualClock
) -> None:
    clock.set(datetime(2026, 3, 10, 15, 0, tzinfo=UTC))  # game day itself, New York afternoon
    processor = ReadinessProcessor(
        registry=load_registry(None),
        table={},
        publisher=publisher,
        clock=clock,
        pipeline_timezone="America/New_York",
        max_message_bytes=10_000,
    )
    for name in PHASE2_REQUIRED:  # phase order: phase 3 fires once phase 2 has
        await feed(processor, name, 2)
    publisher.sent.clear()
    await feed(processor, "upcoming_player_game_context", 3)
    [trigger] = publisher.triggers()
    assert trigger.phase == 4
    assert trigger.completed == ["upcoming_player_game_context"]


async def test_phase_one_never_triggers(
    processor: ReadinessProcessor, publisher: RecordingPublisher
) -> None:
    spec = load_registry(None).phase(1)
    for name in spec.processors:
        await feed(processor, name, 1)
    assert publisher.triggers() == []


async def test_late_older_event_does_not_overwrite_newer_status(
    processor: ReadinessProcessor, publisher: RecordingPublisher
) -> None:
    newer = make_completion(PHASE2_REQUIRED[0], GAME_DATE, 2, at=NOW)
    older = make_completion(
        PHASE2_REQUIRED[0], GAME_DATE, 2, status="failed", at=NOW - timedelta(hours=1)
    )
    await processor.handle(encode(newer), ORIGIN)
    await processor.handle(encode(older), ORIGIN)
    for name in PHASE2_REQUIRED[1:]:
        await feed(processor, name, 2)
    assert len(publisher.triggers()) == 1


@pytest.mark.parametrize(
    ("raw", "error_type"),
    [
        (b"{not json", "not_json"),
        (b"[1, 2]", "not_object"),
        (
            orjson.dumps(
                {
                    "processor_name": "p2_odds_game_lines",
                    "game_date": "2026-03-10",
                    "phase": "phase_9_nowhere",
                    "status": "success",
                    "record_count": 1,
                    "timestamp": "2026-03-10T10:00:00Z",
                }
            ),
            "unknown_phase",
        ),
        (
            orjson.dumps(
                {
                    "processor_name": "who_is_this",
                    "game_date": "2026-03-10",
                    "phase": 2,
                    "status": "success",
                    "record_count": 1,
                    "timestamp": "2026-03-10T10:00:00Z",
                }
            ),
            "unknown_processor",
        ),
        (b"x" * 10_001, "oversized"),
    ],
)
async def test_bad_input_is_dead_lettered_with_reason(
    processor: ReadinessProcessor, publisher: RecordingPublisher, raw: bytes, error_type: str
) -> None:
    await processor.handle(raw, ORIGIN)
    [letter] = publisher.dead_letters()
    assert letter.error_type == error_type
    assert letter.error
    assert base64.b64decode(letter.value) == raw
    assert (letter.source_topic, letter.partition, letter.offset) == (ORIGIN.topic, 0, 7)
    assert letter.key == "2026-03-10"


async def test_good_events_around_bad_ones_still_trigger(
    processor: ReadinessProcessor, publisher: RecordingPublisher
) -> None:
    await feed(processor, PHASE2_REQUIRED[0], 2)
    await processor.handle(b"\xff\xfe garbage", ORIGIN)
    for name in PHASE2_REQUIRED[1:]:
        await feed(processor, name, 2)
    assert len(publisher.dead_letters()) == 1
    assert len(publisher.triggers()) == 1


async def test_trigger_id_is_stable_across_replays(publisher: RecordingPublisher) -> None:
    def fresh() -> ReadinessProcessor:
        return ReadinessProcessor(
            registry=load_registry(None),
            table={},
            publisher=publisher,
            clock=ManualClock(NOW),
            pipeline_timezone="America/New_York",
            max_message_bytes=10_000,
        )

    events = [make_completion(name, GAME_DATE, 2, at=NOW) for name in PHASE2_REQUIRED]
    for processor in (fresh(), fresh()):  # as if the state had been lost and replayed
        for event in events:
            await processor.handle(encode(event), ORIGIN)
    first, second = publisher.triggers()
    assert first.trigger_id == second.trigger_id
