"""Under exactly_once a trigger is committed, and so readable, right after the batch that fired
it, not at the next periodic commit (agents/prompt_commit.py): with a commit interval far
longer than the test, the trigger is still read."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date

import pytest

from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.simulation import TriggerReader, make_completion

GAME_DATE = date(2026, 2, 1)
PHASE2 = ("p2_odds_game_lines", "p2_nbacom_gamebook_pdf", "p2_nbacom_boxscores")
#: Far beyond the read below: no periodic commit happens during the test.
NO_PERIODIC_COMMIT_SECONDS = 3600.0


@pytest.mark.transactions  # exactly_once: the embedded broker has no transactions
async def test_a_trigger_is_readable_without_a_periodic_commit(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    settings = make_settings(kafka_commit_interval_seconds=NO_PERIODIC_COMMIT_SECONDS)
    assert settings.processing_guarantee == "exactly_once"
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    async with CompletionPublisher(settings) as publisher:
        for name in PHASE2:
            await publisher.publish(make_completion(name, GAME_DATE, 2))
    async with TriggerReader(settings) as reader:  # read_committed
        triggers = await reader.read_until(lambda found: len(found) >= 1, give_up_after=60)
    assert [(t.game_date, t.phase, t.reason) for t in triggers] == [(GAME_DATE, 3, "ready")]
