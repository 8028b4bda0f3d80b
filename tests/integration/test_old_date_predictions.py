"""A backfill of a date older than ``retention_days`` runs phase 5 (issue 11 item 1): the
trigger listener judges the rerun request's age, not its game date's."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from google.cloud import bigquery

from phaseflow.agents.predictions.batch_state import PROCESSOR
from phaseflow.models.events import PhaseCompletion
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.rerun import rerun_command
from phaseflow.streams.seed import seed
from phaseflow.streams.simulation import TopicReader

OLD_DAY = datetime.now(UTC).date() - timedelta(days=9)  # default retention_days is 7
PLAYERS = 20


async def test_a_phase_five_rerun_of_a_date_older_than_retention_runs_a_batch(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    bq_client: bigquery.Client,
    bq_settings: Settings,
) -> None:
    settings = make_settings(
        bigquery_endpoint=bq_settings.bigquery_endpoint,
        bigquery_project=bq_settings.bigquery_project,
        bigquery_dataset=bq_settings.bigquery_dataset,
        prediction_batch_wait_seconds=1.0,
    )
    await asyncio.to_thread(seed, bq_client, settings.bigquery_dataset, OLD_DAY, players=PLAYERS)
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    out = io.StringIO()
    code = await rerun_command(
        settings,
        start=OLD_DAY,
        end=None,
        phase=5,
        processor=None,
        attempt=1,
        dry_run=False,
        out=out,
    )
    assert code == 0, out.getvalue()
    async with TopicReader(settings, TopicName.PHASE_COMPLETIONS, PhaseCompletion) as reader:
        found = await reader.read_until(
            lambda seen: any(c.processor_name == PROCESSOR for c in seen), give_up_after=120
        )
    ours = [c for c in found if c.processor_name == PROCESSOR]
    assert [(c.game_date, c.phase, c.status) for c in ours] == [(OLD_DAY, 5, "success")], (
        worker.tail()
    )
    assert ours[0].metadata["expected_players"] == PLAYERS
