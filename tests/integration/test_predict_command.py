"""``phaseflow predict --wait`` against a running worker: a batch over a date with no slate ends
failed, the CLI prints the reason and exits 1 (real broker, real emulator)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import bigquery

from phaseflow.agents.predictions.commands import predict_from_cli
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.seed import seed

pytestmark = pytest.mark.integration


async def test_predict_for_a_date_without_a_slate_exits_1_with_the_reason(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    bq_client: bigquery.Client,
    bq_settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(
        bigquery_endpoint=bq_settings.bigquery_endpoint,
        bigquery_project=bq_settings.bigquery_project,
        bigquery_dataset=bq_settings.bigquery_dataset,
    )
    today = datetime.now(UTC).date()
    # The source tables exist (yesterday is seeded); today has no slate in them.
    await asyncio.to_thread(
        seed, bq_client, settings.bigquery_dataset, today - timedelta(days=1), players=3
    )
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)

    code = await predict_from_cli(
        settings, game_date=today.isoformat(), batch_id=None, wait_seconds=60.0
    )

    out = capsys.readouterr().out
    assert code == 1, f"{out}\n{worker.tail()}"
    assert f"phase 5 of {today} failed: batch {today}-r1, 0/0 players, 0 predictions" in out
    assert f"no_slate: no players on the slate of {today}" in out


async def test_a_batch_that_stalls_fails_at_its_deadline_and_a_new_one_may_start(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    bq_client: bigquery.Client,
    bq_settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(
        bigquery_endpoint=bq_settings.bigquery_endpoint,
        bigquery_project=bq_settings.bigquery_project,
        bigquery_dataset=bq_settings.bigquery_dataset,
        prediction_batch_deadline_seconds=6.0,
        prediction_coordinator_tick_seconds=0.5,
        # Slow workers: they wait this long to fill a batch of 100 requests, far past the
        # deadline, so no player reports and the batch stalls at 0 %.
        prediction_batch_wait_seconds=600.0,
    )
    today = datetime.now(UTC).date()
    await asyncio.to_thread(
        seed, bq_client, settings.bigquery_dataset, today, players=5, history_games=3
    )
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)

    code = await predict_from_cli(
        settings, game_date=today.isoformat(), batch_id=None, wait_seconds=60.0
    )
    first = capsys.readouterr().out
    assert code == 1, f"{first}\n{worker.tail()}"
    assert f"phase 5 of {today} failed: batch {today}-r1, 0/" in first
    assert f"deadline: batch {today}-r1 of {today} reached its deadline" in first

    # Not refused as already_running: a new batch starts (this one, or the readiness agent's
    # rerun of the failed completion, whichever comes first) and ends at its own deadline.
    code = await predict_from_cli(
        settings, game_date=today.isoformat(), batch_id=None, wait_seconds=60.0
    )
    second = capsys.readouterr().out
    assert code == 1, f"{second}\n{worker.tail()}"
    assert "reached its deadline" in second
    assert f"batch {today}-r1," not in second
