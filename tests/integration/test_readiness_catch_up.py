"""Readiness on a real broker reading a backlog late, and the record timestamp as receive time.

The completions are on the broker before the worker starts, with record timestamps five hours
old (as if the worker had been down since the processors finished): a phase whose processors all
reported completes (``ready``), not ``timeout``; a phase missing one times out on the tick with
only that one missing. A completion stamped six hours ahead is clamped and cannot move its
phase's deadline. Three processors sharing one workflow run id all count; a re-sent one is
dropped and counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaProducer

from models.codec import encode
from models.events import Alert, PhaseTrigger, RerunRequest
from streams.local.worker_process import WorkerProcess
from streams.publish import CompletionPublisher
from streams.settings import Settings
from streams.simulation import TopicReader, TriggerReader, make_completion
from streams.topics import TopicName, ensure_topics
from tests.integration.test_readiness_faults import wait_until_committed

PHASE4 = [
    "team_defense_zone_analysis",
    "player_shot_zone_analysis",
    "player_composite_factors",
    "player_daily_cache",
    "ml_feature_store",
]
ALL_DONE = date(2026, 2, 1)
ONE_MISSING = date(2026, 2, 2)
FUTURE_STAMP = date(2026, 2, 3)
SHARED_RUN = date(2026, 2, 4)


async def publish_backlog(settings: Settings, finished_at: datetime) -> None:
    """Phase-4 completions as their processors sent them, two minutes apart, hours ago: the
    record timestamp is when they were sent, not when a worker reads them."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        topic = settings.topic(TopicName.PHASE_COMPLETIONS)
        for game_date, names in ((ALL_DONE, PHASE4), (ONE_MISSING, PHASE4[:4])):
            for index, name in enumerate(names):
                at = finished_at + timedelta(minutes=2 * index)
                event = make_completion(name, game_date, 4, at=at)
                await producer.send_and_wait(
                    topic,
                    value=encode(event),
                    key=game_date.isoformat().encode(),
                    timestamp_ms=int(at.timestamp() * 1000),
                )
        ahead = make_completion(
            PHASE4[0], FUTURE_STAMP, 4, at=datetime.now(UTC) + timedelta(hours=6)
        )
        await producer.send_and_wait(
            topic, value=encode(ahead), key=FUTURE_STAMP.isoformat().encode()
        )
        # Three processors of one workflow run, the last one re-sent (a duplicate).
        shared = [
            make_completion(name, SHARED_RUN, 2, execution_id="workflow-run-42")
            for name in ("p2_odds_game_lines", "p2_nbacom_gamebook_pdf", "p2_nbacom_boxscores")
        ]
        for event in [*shared, shared[-1]]:
            await producer.send_and_wait(
                topic, value=encode(event), key=SHARED_RUN.isoformat().encode()
            )
    finally:
        await producer.stop()


def by_date(triggers: list[PhaseTrigger]) -> dict[date, tuple[str, str, list[str]]]:
    return {t.game_date: (t.reason, t.rule, t.missing) for t in triggers}


async def test_a_backlog_read_late_completes_phases_and_times_out_only_the_missing(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    client_for: Callable[[Settings], aiohttp.ClientSession],
) -> None:
    settings = make_settings(readiness_tick_seconds=0.5)
    await ensure_topics(settings)
    started = datetime.now(UTC)
    await publish_backlog(settings, finished_at=started - timedelta(hours=5))
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    async with TriggerReader(settings) as reader:
        triggers = await reader.read_until(
            lambda found: len(found) >= 3, give_up_after=60, quiet_for=3
        )
    assert len(triggers) == 3, triggers
    assert by_date(triggers) == {
        ALL_DONE: ("ready", "all_complete", []),
        ONE_MISSING: ("timeout", "tier_2_4_of_5", ["ml_feature_store"]),
        SHARED_RUN: ("ready", "all_complete", []),
    }
    async with TopicReader(settings, TopicName.ALERTS, Alert) as alerts_reader:
        alerts = await alerts_reader.read_until(bool, give_up_after=10, quiet_for=2)
    timeouts = [a for a in alerts if a.kind == "phase_timeout"]
    assert [(a.subject, a.details["missing"]) for a in timeouts] == [
        (f"{ONE_MISSING.isoformat()}:phase_4", ["ml_feature_store"])
    ]
    async with TopicReader(settings, TopicName.RERUN_REQUESTS, RerunRequest) as reruns_reader:
        reruns = await reruns_reader.read_until(bool, give_up_after=10, quiet_for=2)
    assert [(r.game_date, r.processor_name, r.reason) for r in reruns] == [
        (ONE_MISSING, "ml_feature_store", "missing_at_deadline")
    ]

    http = client_for(settings)
    async with http.get(f"/status/{FUTURE_STAMP.isoformat()}") as response:
        status = await response.json()
    [phase4] = [p for p in status["phases"] if p["phase"] == 4]
    deadline = datetime.fromisoformat(phase4["deadline"])
    # max_wait (4 h) from when the broker took the record, not from the 6 h-ahead stamp.
    assert started + timedelta(hours=4) <= deadline <= datetime.now(UTC) + timedelta(hours=4)
    async with http.get("/metrics") as response:
        metrics = await response.text()
    assert "phaseflow_completion_timestamps_clamped_total 1.0" in metrics
    assert 'phaseflow_completions_dropped_total{reason="duplicate"} 1.0' in metrics


RESTART_DEADLINE = """
retention_days = 30
[[phases]]
phase = 3
name = "analytics"
processors = ["a", "b", "c", "d", "e"]
max_wait = "8s"
[[phases]]
phase = 4
name = "precompute"
processors = ["x"]
"""


async def test_a_backlog_after_a_restart_is_read_before_the_passed_deadline_is_decided(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    tmp_path: Path,
) -> None:
    registry_path = tmp_path / "pipeline.toml"
    registry_path.write_text(RESTART_DEADLINE)
    settings = make_settings(registry_path=registry_path, readiness_tick_seconds=0.2)
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    async with CompletionPublisher(settings) as publisher:
        await publisher.publish(make_completion("a", ALL_DONE, 3))
        await wait_until_committed(settings)
        worker.kill()  # its state (first completion, max_wait deadline) is in the changelog
        for name in ("b", "c", "d", "e"):  # received well before the deadline
            await publisher.publish(make_completion(name, ALL_DONE, 3))
    await asyncio.sleep(10)  # the 8 s max_wait passes while no worker runs
    worker.start()
    async with TriggerReader(settings) as reader:
        triggers = await reader.read_until(
            lambda found: len(found) >= 1, give_up_after=90, quiet_for=3
        )
    assert [(t.phase, t.reason, t.rule, t.missing) for t in triggers] == [
        (4, "ready", "all_complete", [])
    ]
