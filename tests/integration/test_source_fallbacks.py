"""Source fallbacks (``any_of``) through a running worker on the real broker: a phase whose
group is met only by the fallback fires, and a primary that fails before the fallback succeeds
fires exactly once; ``phaseflow status`` says which source satisfied the group."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.simulation import TriggerReader, make_completion
from phaseflow.streams.status import run_status

pytestmark = pytest.mark.integration

PRIMARY = "p2_odds_game_lines"
FALLBACK = "p2_bettingpros_game_lines"
REGISTRY = f"""
[rerun]
max_attempts = 3
backoff = "1h"
[[phases]]
phase = 2
name = "raw"
processors = ["p2_nbacom_boxscores"]
any_of = [["{PRIMARY}", "{FALLBACK}"]]
[[phases]]
phase = 3
name = "analytics"
processors = ["player_game_summary"]
"""


async def test_a_fallback_group_fires_on_the_fallback_and_only_once(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    tmp_path: Path,
) -> None:
    registry_path = tmp_path / "pipeline.toml"
    registry_path.write_text(REGISTRY)
    settings = make_settings(registry_path=registry_path, readiness_tick_seconds=0.5)
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    yesterday = datetime.now(ZoneInfo(settings.pipeline_timezone)).date() - timedelta(days=1)
    only_fallback, primary_failed = yesterday - timedelta(days=1), yesterday
    async with CompletionPublisher(settings) as publisher:
        for day in (only_fallback, primary_failed):
            await publisher.publish(make_completion("p2_nbacom_boxscores", day, 2))
        await publisher.publish(make_completion(FALLBACK, only_fallback, 2))
        await publisher.publish(make_completion(PRIMARY, primary_failed, 2, status="failed"))
        await publisher.publish(make_completion(FALLBACK, primary_failed, 2))
    async with TriggerReader(settings) as reader:
        fired = await reader.read_until(
            lambda found: len(found) >= 2, give_up_after=90, quiet_for=3.0
        )
    assert sorted((t.game_date, t.phase, t.reason) for t in fired) == [
        (only_fallback, 3, "ready"),
        (primary_failed, 3, "ready"),
    ], worker.tail()
    assert all(t.completed == [FALLBACK, "p2_nbacom_boxscores"] for t in fired)

    out = io.StringIO()
    url = f"http://127.0.0.1:{settings.web_port}"
    code = await asyncio.to_thread(run_status, settings, game_date=primary_failed, url=url, out=out)
    assert code == 0, out.getvalue()
    [row] = [line for line in out.getvalue().splitlines() if line.startswith("2 ")]
    assert "2/2" in row, row
    assert f"{PRIMARY} satisfied by {FALLBACK}" in row, row
