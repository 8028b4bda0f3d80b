"""``phaseflow tail`` on the real broker: events published after it started appear, one line
each, filtered by date and topic; what was there before it started does not; no consumer group
is created."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest

from phaseflow.models.codec import encode
from phaseflow.models.events import PhaseTrigger, RerunRequest
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.side_producer import SideProducer
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.tail import tail_command
from tests.fixtures.polling import poll

pytestmark = pytest.mark.integration

DAY = date(2026, 3, 10)
OTHER_DAY = date(2026, 3, 11)
AT = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)


def trigger(game_date: date, reason: str) -> PhaseTrigger:
    return PhaseTrigger(
        game_date=game_date,
        phase=3,
        reason=reason,
        rule="all_complete",
        completed=["a"],
        missing=[],
        trigger_id=PhaseTrigger.make_id(game_date, 3, reason),
        triggered_at=AT,
        correlation_id=f"{game_date}:3",
    )


def rerun(game_date: date) -> RerunRequest:
    return RerunRequest(
        game_date=game_date,
        phase=2,
        processor_name="p2_odds_game_lines",
        reason="manual",
        attempt=1,
        request_id=RerunRequest.make_id(game_date, 2, "p2_odds_game_lines", 1),
        requested_by="test",
        requested_at=AT,
    )


async def test_tail_prints_what_is_published_after_it_started(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    await ensure_topics(settings)
    async with SideProducer(settings) as producer:
        before = trigger(DAY, "timeout")  # published before the tail starts: not shown
        await producer.send(TopicName.PHASE_TRIGGERS, before.key, encode(before))
        out, started, stop = io.StringIO(), asyncio.Event(), asyncio.Event()
        tail = asyncio.create_task(
            tail_command(
                settings,
                topics=("triggers", "reruns"),
                game_date=DAY,
                out=out,
                stop=stop,
                started=started,
            )
        )
        try:
            await asyncio.wait_for(started.wait(), timeout=60)
            for event, topic in (
                (trigger(OTHER_DAY, "ready"), TopicName.PHASE_TRIGGERS),  # another date
                (rerun(DAY), TopicName.RERUN_REQUESTS),
                (trigger(DAY, "ready"), TopicName.PHASE_TRIGGERS),
            ):
                await producer.send(topic, event.key, encode(event))

            async def both_shown() -> bool:
                return out.getvalue().count("\n") >= 3

            await poll(both_shown, "two events tailed", give_up_after=60)
        finally:
            stop.set()
            code = await tail
    assert code == 0
    header, *lines = out.getvalue().splitlines()
    assert header == "following triggers, reruns for 2026-03-10 (Ctrl-C ends)"
    assert sorted(lines) == [
        (
            "2026-03-11T09:00:00Z rerun       2026-03-10 phase 2 p2_odds_game_lines "
            "(manual, attempt 1, by test)"
        ),
        "2026-03-11T09:00:00Z trigger     2026-03-10 phase 3 ready (all_complete)",
    ]
    admin = kafka_clients.admin(settings)
    await admin.start()
    try:
        groups = await admin.list_consumer_groups()
    finally:
        await admin.close()
    assert not [group for group, *_ in groups if settings.topic_prefix in group]
