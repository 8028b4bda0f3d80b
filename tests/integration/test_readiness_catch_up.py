"""Readiness on a real broker reading a backlog late, and the broker's append time as the
receive time.

The completions are on the broker before the worker starts, and their phase's deadlines pass
while no worker runs (as after an outage): a phase whose processors all reported completes
(``ready``), not ``timeout``; a phase missing one times out on the tick with only that one
missing. A completion stamped six hours ahead is clamped and cannot move its phase's deadline.
Three processors sharing one workflow run id all count; a re-sent one is dropped and counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from phaseflow.models.events import Alert, PhaseTrigger, RerunRequest
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.simulation import TopicReader, TriggerReader, make_completion
from tests.integration.test_readiness_faults import wait_until_committed

ALL_DONE = date(2026, 2, 1)
ONE_MISSING = date(2026, 2, 2)
FUTURE_STAMP = date(2026, 2, 3)
SHARED_RUN = date(2026, 2, 4)
PHASE3 = ["a", "b", "c", "d", "e"]

CATCH_UP = """
retention_days = 30
[[phases]]
phase = 2
name = "raw"
processors = ["r1", "r2", "r3"]
[[phases]]
phase = 3
name = "analytics"
independent = true  # judged without waiting for phase 2 (phase order is not what this tests)
processors = ["a", "b", "c", "d", "e"]
tiers = [{ after = "4s", min_complete = 5 }, { after = "6s", min_complete = 4 }]
max_wait = "8s"
[[phases]]
phase = 4
name = "precompute"
processors = ["x"]
"""


async def publish_backlog(settings: Settings) -> None:
    """What the processors sent while no worker ran."""
    async with CompletionPublisher(settings) as publisher:
        for game_date, names in ((ALL_DONE, PHASE3), (ONE_MISSING, PHASE3[:4])):
            for name in names:
                await publisher.publish(make_completion(name, game_date, 3))
        ahead = datetime.now(UTC) + timedelta(hours=6)
        await publisher.publish(make_completion("a", FUTURE_STAMP, 3, at=ahead))
        # Three processors of one workflow run, the last one re-sent (a duplicate).
        shared = [
            make_completion(name, SHARED_RUN, 2, execution_id="workflow-run-42")
            for name in ("r1", "r2", "r3")
        ]
        for event in [*shared, shared[-1]]:
            await publisher.publish(event)


def by_date(triggers: list[PhaseTrigger]) -> dict[date, tuple[int, str, str, list[str]]]:
    return {t.game_date: (t.phase, t.reason, t.rule, t.missing) for t in triggers}


async def test_a_backlog_read_late_completes_phases_and_times_out_only_the_missing(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    client_for: Callable[[Settings], aiohttp.ClientSession],
    broker: Any,
    tmp_path: Path,
) -> None:
    registry_path = tmp_path / "pipeline.toml"
    registry_path.write_text(CATCH_UP)
    settings = make_settings(registry_path=registry_path, readiness_tick_seconds=0.2)
    await ensure_topics(settings)
    published = datetime.now(UTC)
    await publish_backlog(settings)
    await asyncio.sleep(9)  # every deadline (max_wait 8 s) passes while no worker runs
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    async with TriggerReader(settings) as reader:
        triggers = await reader.read_until(
            lambda found: len(found) >= 4, give_up_after=60, quiet_for=3
        )
    assert len(triggers) == 4, triggers
    assert by_date(triggers) == {
        ALL_DONE: (4, "ready", "all_complete", []),
        ONE_MISSING: (4, "timeout", "tier_2_4_of_5", ["e"]),
        SHARED_RUN: (3, "ready", "all_complete", []),
        # max_wait from when the broker took it, not from the stamp six hours ahead
        FUTURE_STAMP: (4, "timeout", "max_wait", ["b", "c", "d", "e"]),
    }
    async with TopicReader(settings, TopicName.ALERTS, Alert) as alerts_reader:
        alerts = await alerts_reader.read_until(bool, give_up_after=10, quiet_for=2)
    timeouts = {a.subject: a.details["missing"] for a in alerts if a.kind == "phase_timeout"}
    assert timeouts == {
        f"{ONE_MISSING.isoformat()}:phase_3": ["e"],
        f"{FUTURE_STAMP.isoformat()}:phase_3": ["b", "c", "d", "e"],
    }
    async with TopicReader(settings, TopicName.RERUN_REQUESTS, RerunRequest) as reruns_reader:
        reruns = await reruns_reader.read_until(bool, give_up_after=10, quiet_for=2)
    assert sorted((r.game_date, r.processor_name, r.reason) for r in reruns) == [
        (ONE_MISSING, "e", "missing_at_deadline"),
        *((FUTURE_STAMP, name, "missing_at_deadline") for name in ("b", "c", "d", "e")),
    ]

    http = client_for(settings)
    async with http.get(f"/status/{FUTURE_STAMP.isoformat()}") as response:
        status = await response.json()
    [phase3] = [p for p in status["phases"] if p["phase"] == 3]
    received = datetime.fromisoformat(phase3["first_completion_at"])
    if broker.kind == "tansu":  # keeps producer timestamps (CreateTime): the worker clock counts
        assert published + timedelta(seconds=9) <= received <= datetime.now(UTC)
    else:  # LogAppendTime: when the broker appended it, while no worker ran
        assert published <= received <= published + timedelta(seconds=9)
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
