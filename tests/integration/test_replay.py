"""``phaseflow replay`` on the real broker: a worker runs two recorded dates (one ready, one that
times out on its tier), then the log is replayed offline under the same registry (the same
starts, reruns and alerts) and under one without a processor (the dates start earlier, without
the timeout's rerun and alert); the replays leave no new topic, group or record behind."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
from aiokafka import TopicPartition

from phaseflow.models.events import Alert, RerunRequest
from phaseflow.streams.cli_errors import BadInputError
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.replay import replay_command
from phaseflow.streams.replay_report import Comparison
from phaseflow.streams.simulation import TopicReader, TriggerReader, make_completion

pytestmark = pytest.mark.integration

TIER_SECONDS = 8
REGISTRY = f"""
[[phases]]
phase = 2
name = "raw"
processors = ["p2_a", "p2_b", "p2_c"]
tiers = [{{ after = "{TIER_SECONDS}s", min_complete = 2 }}]
[[phases]]
phase = 3
name = "analytics"
processors = ["player_game_summary"]
"""
#: The same pipeline without p2_c.
WITHOUT_C = REGISTRY.replace('["p2_a", "p2_b", "p2_c"]', '["p2_a", "p2_b"]')
#: How far a start on the log may lie from its replay: the worker handles a completion a moment
#: after the broker appended it, and a tick up to one timer run (0.5 s) plus its trip through the
#: ticks topic after the deadline; the replay decides at the append time and on the deadline's
#: timer run. Generous for a loaded machine, and well below the 8 s tier.
SAME_START = timedelta(seconds=4)


async def cluster_snapshot(settings: Settings) -> dict[str, object]:
    """This test's topics, consumer groups and every partition's end offset."""
    admin = kafka_clients.admin(settings)
    await admin.start()
    try:
        topics = sorted(t for t in await admin.list_topics() if t.startswith(settings.topic_prefix))
        groups = sorted(
            g for g, *_ in await admin.list_consumer_groups() if settings.topic_prefix in g
        )
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic["partitions"]
    ]
    assert {tp.topic for tp in partitions} == set(topics)
    consumer = kafka_clients.consumer(settings, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {
        "topics": topics,
        "groups": groups,
        "ends": {f"{tp.topic}[{tp.partition}]": offset for tp, offset in ends.items()},
    }


async def replay_under(settings: Settings, registry: Path, dates: tuple[date, ...]) -> Comparison:
    out = io.StringIO()
    comparison = await replay_command(settings, dates=dates, registry_path=registry, out=out)
    assert out.getvalue().startswith(f"replay of {dates[0]}"), out.getvalue()
    return comparison


async def record_two_dates(
    settings: Settings, worker: WorkerProcess, ready_day: date, timeout_day: date
) -> None:
    """The worker starts phase 3 of ``ready_day`` when p2_c reports, and of ``timeout_day``
    on the tier without p2_c, with its rerun of p2_c and its phase_timeout alert."""
    async with CompletionPublisher(settings) as publisher:
        for name in ("p2_a", "p2_b", "p2_c"):
            await publisher.publish(make_completion(name, ready_day, 2))
        for name in ("p2_a", "p2_b"):  # p2_c never reports
            await publisher.publish(make_completion(name, timeout_day, 2))
    async with TriggerReader(settings) as reader:
        fired = await reader.read_until(lambda found: len(found) >= 2, give_up_after=90)
    assert sorted((t.game_date, t.reason) for t in fired) == [
        (ready_day, "ready"),
        (timeout_day, "timeout"),
    ], worker.tail()
    async with TopicReader(settings, TopicName.RERUN_REQUESTS, RerunRequest) as reruns:
        await reruns.read_until(lambda found: len(found) >= 1, give_up_after=60)
    async with TopicReader(settings, TopicName.ALERTS, Alert) as alerts:
        await alerts.read_until(
            lambda found: any(a.kind == "phase_timeout" for a in found), give_up_after=60
        )


def assert_the_same(replayed: Comparison, timeout_day: date) -> None:
    """The same starts within the timer's resolution, the same rerun and alert."""
    assert replayed.completions == 5
    assert len(replayed.phases) == 2
    for start in replayed.phases:
        assert start.phase == 3
        assert start.fired is not None, start
        assert start.would_fire is not None, start
        assert (start.would_fire.reason, start.would_fire.rule) == (
            start.fired.reason,
            start.fired.rule,
        )
        assert start.delta_seconds is not None
        assert abs(start.delta_seconds) <= SAME_START.total_seconds(), start
    assert [(r.game_date, r.processor_name, r.reason) for r in replayed.reruns_sent] == [
        (timeout_day, "p2_c", "missing_at_deadline")
    ]
    assert replayed.reruns_only_sent == []
    assert replayed.reruns_only_would_send == []
    assert [a.subject for a in replayed.alerts_sent] == [f"{timeout_day}:phase_2"]
    assert replayed.alerts_only_sent == []
    assert replayed.alerts_only_would_send == []


def assert_started_earlier_without_c(changed: Comparison) -> None:
    """p2_c's completion is unknown (dead-lettered by the replay), both dates start as soon as
    p2_b reported, and the timeout's rerun and alert are not sent."""
    assert changed.dead_lettered == 1
    ready, timed_out = changed.phases
    assert ready.would_fire is not None
    assert ready.fired is not None
    assert ready.would_fire.completed == ["p2_a", "p2_b"]
    assert ready.would_fire.triggered_at <= ready.fired.triggered_at
    assert timed_out.would_fire is not None
    assert timed_out.fired is not None
    assert (timed_out.fired.reason, timed_out.would_fire.reason) == ("timeout", "ready")
    assert timed_out.delta_seconds is not None
    assert timed_out.delta_seconds <= -(TIER_SECONDS - SAME_START.total_seconds())
    assert [r.processor_name for r in changed.reruns_only_sent] == ["p2_c"]
    assert changed.reruns_only_would_send == []
    assert [a.kind for a in changed.alerts_only_sent] == ["phase_timeout"]
    assert changed.alerts_only_would_send == []


async def test_a_recorded_day_replays_the_same_and_shows_a_changed_registry(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    tmp_path: Path,
) -> None:
    same, without_c = tmp_path / "pipeline.toml", tmp_path / "without_c.toml"
    same.write_text(REGISTRY)
    without_c.write_text(WITHOUT_C)
    settings = make_settings(registry_path=same, readiness_tick_seconds=0.5)
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    yesterday = datetime.now(ZoneInfo(settings.pipeline_timezone)).date() - timedelta(days=1)
    dates = (yesterday - timedelta(days=1), yesterday)
    await record_two_dates(settings, worker, *dates)
    worker.stop(timeout=20)  # its timer would keep sending ticks
    before = await cluster_snapshot(settings)

    assert_the_same(await replay_under(settings, same, dates), yesterday)
    assert_started_earlier_without_c(await replay_under(settings, without_c, dates))

    out = io.StringIO()  # --json: the same report as one document
    await replay_command(settings, dates=dates, registry_path=without_c, out=out, as_json=True)
    document = orjson.loads(out.getvalue())
    assert [p["would_fire"]["reason"] for p in document["phases"]] == ["ready", "ready"]
    assert [r["processor"] for r in document["reruns"]["only_sent"]] == ["p2_c"]

    empty = yesterday - timedelta(days=5)  # nothing on the log: one line, nothing to replay
    with pytest.raises(BadInputError, match=rf"no completions of {empty} on "):
        await replay_command(settings, dates=(empty,), registry_path=same, out=io.StringIO())

    assert await cluster_snapshot(settings) == before
