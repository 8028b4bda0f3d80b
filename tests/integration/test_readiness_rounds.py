"""Readiness across restarts and rounds on a real broker: a registry change re-evaluates held
dates at start, and a backfill rerun goes phase by phase, following the triggers."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from phaseflow.models.events import PhaseTrigger, RerunRequest
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.rerun import rerun_command
from phaseflow.streams.simulation import TopicReader, TriggerReader, make_completion
from tests.integration.test_readiness_faults import wait_until_committed

SMALL = """
retention_days = 30
stall_after = "24h"
[rerun]
max_attempts = 3
backoff = "1s"
[[phases]]
phase = 2
name = "raw"
processors = ["r1", "r2"]
{optional}
[[phases]]
phase = 3
name = "analytics"
processors = ["a"]
[[phases]]
phase = 4
name = "precompute"
processors = ["x"]
"""
ANSWERS = {3: "a", 4: "x"}  # the processor a trigger of that phase starts


def today(settings: Settings) -> date:
    return datetime.now(ZoneInfo(settings.pipeline_timezone)).date()


async def test_a_registry_change_fires_a_date_older_than_lookback_after_restart(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    tmp_path: Path,
) -> None:
    registry_path = tmp_path / "pipeline.toml"
    registry_path.write_text(SMALL.format(optional=""))
    settings = make_settings(registry_path=registry_path, readiness_tick_seconds=0.5)
    await ensure_topics(settings)
    held = today(settings) - timedelta(days=5)  # past [cleanup] lookback_days (3)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    async with CompletionPublisher(settings) as publisher:
        await publisher.publish(make_completion("r1", held, 2))  # r2 never reports
    await wait_until_committed(settings)
    async with TriggerReader(settings) as reader:
        assert await reader.read(3.0) == []
    await asyncio.to_thread(worker.stop)
    registry_path.write_text(SMALL.format(optional='optional = ["r2"]'))
    worker.start()
    async with TriggerReader(settings) as reader:
        fired = await reader.read_until(lambda found: len(found) >= 1, give_up_after=90)
    assert [(t.game_date, t.phase, t.reason) for t in fired] == [(held, 3, "ready")], worker.tail()


async def _answer(settings: Settings, stop: asyncio.Event) -> None:
    """The processors: a backfill rerun request or a (new) trigger makes them run and report."""
    answered: set[str] = set()
    async with (
        CompletionPublisher(settings) as publisher,
        TriggerReader(settings) as triggers,
        TopicReader(settings, TopicName.RERUN_REQUESTS, RerunRequest) as reruns,
    ):
        while not stop.is_set():
            for trigger in await triggers.read(0.2):
                if trigger.trigger_id not in answered and trigger.phase in ANSWERS:
                    answered.add(trigger.trigger_id)
                    name = ANSWERS[trigger.phase]
                    await publisher.publish(make_completion(name, trigger.game_date, trigger.phase))
            for request in await reruns.read(0.2):
                if request.request_id not in answered and request.reason == "backfill":
                    answered.add(request.request_id)
                    await publisher.publish(
                        make_completion(request.processor_name, request.game_date, request.phase)
                    )


async def test_a_backfill_rerun_goes_phase_by_phase_and_each_phase_runs_on_fresh_output(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    tmp_path: Path,
) -> None:
    registry_path = tmp_path / "pipeline.toml"
    registry_path.write_text(SMALL.format(optional=""))
    settings = make_settings(registry_path=registry_path, readiness_tick_seconds=0.5)
    await ensure_topics(settings)
    dates = [today(settings) - timedelta(days=20), today(settings) - timedelta(days=19)]
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    stop = asyncio.Event()
    processors = asyncio.create_task(_answer(settings, stop))
    try:
        async with CompletionPublisher(settings) as publisher:  # the original day
            for day in dates:
                for name in ("r1", "r2"):
                    await publisher.publish(make_completion(name, day, 2))
        async with TriggerReader(settings) as reader:
            first = await reader.read_until(lambda found: len(found) >= 4, give_up_after=90)
        assert sorted((t.game_date, t.phase) for t in first) == sorted(
            (day, phase) for day in dates for phase in (3, 4)
        )
        out = io.StringIO()
        code = await rerun_command(
            settings,
            start=dates[0],
            end=dates[1],
            phase=None,
            processor=None,
            attempt=1,
            dry_run=False,
            out=out,
            phase_timeout=timedelta(minutes=2),
        )
    finally:
        stop.set()
        await processors
    lines = out.getvalue()
    assert code == 0, lines + worker.tail()
    assert "4 rerun request(s)" in lines  # phase 2 only: r1, r2 for two dates
    assert "phase 3 started for 2 date(s)\nphase 4 started for 2 date(s)\n" in lines
    async with TriggerReader(settings) as reader:
        every: list[PhaseTrigger] = await reader.read_until(
            lambda found: len(found) >= 8, give_up_after=30
        )
    rounds = sorted((t.game_date, t.phase, t.reason) for t in every)
    assert rounds == sorted(
        (day, phase, reason)
        for day in dates
        for phase, reason in ((3, "ready"), (3, "rerun"), (4, "ready"), (4, "ready"))
    )
    assert len({t.trigger_id for t in every}) == 8
