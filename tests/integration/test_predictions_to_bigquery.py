"""From a phase-5 trigger to rows in BigQuery, with the sink running inside the worker.

Seed 450 players, start one ``phaseflow worker`` pointed at the emulator (the sink feature starts
with it), publish a phase-5 trigger (twice), and check that every (player, system, line) key is
exactly once in ``player_prop_predictions`` and that the phase-5 completion arrives. Then start
the same batch again and deliver every prediction request a second time: the workers predict
again (same keys, newer ``created_at``), the sink MERGEs the new versions, and every key is still
there exactly once. Finally a SIGTERM: the sink has committed everything it merged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest
from aiokafka import TopicPartition
from google.cloud import bigquery

from phaseflow.agents.predictions.batch_state import PROCESSOR
from phaseflow.agents.predictions.messages import make_command
from phaseflow.models.codec import decode, encode
from phaseflow.models.events import PhaseCompletion, PhaseTrigger
from phaseflow.sinks.merge_sql import TARGET_TABLE
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.bigquery_clients import RetryPolicy
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.side_producer import SideProducer
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.seed import seed
from tests.fixtures.bigquery import STAGINGS
from tests.fixtures.prediction_keys import expected_prediction_keys
from tests.integration.test_predictions_path import PLAYERS, read_topic

_TIMEOUT = 30.0
pytestmark = pytest.mark.parametrize("sink_staging", STAGINGS, indirect=True)


def today() -> date:
    # The trigger listener and the coordinator ignore dates older than the registry's
    # retention (7 days), so the game date must be recent: today.
    return datetime.now(UTC).date()


def expected_keys(day: date) -> set[str]:
    return expected_prediction_keys(day, players=PLAYERS)


def phase5_trigger(day: date) -> PhaseTrigger:
    return PhaseTrigger(
        game_date=day,
        phase=5,
        reason="ready",
        rule="all_complete",
        completed=["ml_feature_store"],
        trigger_id=PhaseTrigger.make_id(day, 5, "ready"),
        triggered_at=datetime.now(UTC),
    )


def _query(client: bigquery.Client, sql: str) -> list[bigquery.Row]:
    job = client.query(
        sql, timeout=_TIMEOUT, retry=RetryPolicy(deadline_seconds=_TIMEOUT).sync(), job_retry=None
    )
    return list(job.result(timeout=_TIMEOUT))


def key_counts(
    client: bigquery.Client, table_id: str, since: datetime | None = None
) -> dict[str, int]:
    """``{game_date}:{player}:{system}:{line_key}`` -> rows, optionally only rows newer than
    ``since`` (by ``created_at``)."""
    where = f"WHERE created_at > TIMESTAMP '{since.isoformat()}'" if since else ""
    rows = _query(
        client,
        f"SELECT CAST(game_date AS STRING) AS d, player_lookup, system_id, line_key, "  # noqa: S608
        f"COUNT(*) AS n FROM `{table_id}` {where} "
        "GROUP BY game_date, player_lookup, system_id, line_key",
    )
    return {f"{r['d']}:{r['player_lookup']}:{r['system_id']}:{r['line_key']}": r["n"] for r in rows}


async def wait_for_keys(
    client: bigquery.Client,
    table_id: str,
    wanted: set[str],
    *,
    since: datetime | None = None,
    give_up_after: float,
    worker: WorkerProcess,
) -> dict[str, int]:
    deadline = time.monotonic() + give_up_after
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            counts = await asyncio.to_thread(key_counts, client, table_id, since)
        except Exception:  # noqa: BLE001 -- the sink creates the table when it starts
            counts = {}
        if set(counts) >= wanted:
            return counts
        await asyncio.sleep(0.5)
    raise AssertionError(f"{len(counts)} of {len(wanted)} keys in BigQuery:\n{worker.tail()}")


async def sink_lag(settings: Settings) -> dict[int, tuple[int | None, int]]:
    """Partitions whose predictions the sink's group has not all committed: (committed, end)."""
    topic = settings.topic(TopicName.PREDICTIONS)
    probe = kafka_clients.consumer(
        settings, group_id=f"{settings.app_id}.bigquery-predictions-sink", enable_auto_commit=False
    )
    await probe.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.kafka_topic_partitions)]
        ends = await probe.end_offsets(tps)
        behind: dict[int, tuple[int | None, int]] = {}
        for tp in tps:
            committed: int | None = await probe.committed(tp)
            if (committed or 0) < ends[tp]:
                behind[tp.partition] = (committed, ends[tp])
        return behind
    finally:
        await probe.stop()


async def start_again_and_redeliver(settings: Settings, day: date) -> datetime:
    """Start the completed batch again and deliver every player's request once more."""
    resent_at = datetime.now(UTC)
    async with SideProducer(settings) as side:
        again = make_command("start", day, issued_at=resent_at, batch_id=f"{day}-r1", source="test")
        await side.send(TopicName.PREDICTION_PROGRESS, again.key, encode(again))
        requests = await read_topic(
            settings,
            TopicName.PREDICTION_REQUESTS,
            lambda found: len({k for k, _ in found}) >= PLAYERS,
            give_up_after=30,
            quiet_for=1.0,
        )
        # The trigger was read twice while the batch ran, so the coordinator re-sent the
        # requests once already (same ids and keys); one per player is delivered again here.
        unique = dict(requests)
        assert len(unique) == PLAYERS
        await asyncio.gather(
            *(side.send(TopicName.PREDICTION_REQUESTS, k, v) for k, v in unique.items())
        )
    return resent_at


async def test_450_players_each_key_once_in_bigquery_also_when_delivered_twice(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    bq_client: bigquery.Client,
    bq_settings: Settings,
) -> None:
    settings = make_settings(
        bigquery_endpoint=bq_settings.bigquery_endpoint,
        bigquery_write_endpoint=bq_settings.bigquery_write_endpoint,
        sink_staging=bq_settings.sink_staging,
        bigquery_project=bq_settings.bigquery_project,
        bigquery_dataset=bq_settings.bigquery_dataset,
        prediction_batch_size=100,
        prediction_batch_wait_seconds=1.0,
        sink_batch_rows=2000,
        sink_flush_seconds=0.5,
        bigquery_requests_per_second=100,
    )
    day = today()
    table_id = f"{bq_client.project}.{settings.bigquery_dataset}.{TARGET_TABLE}"
    summary = await asyncio.to_thread(seed, bq_client, settings.bigquery_dataset, day)
    assert summary.players == PLAYERS
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    wanted = expected_keys(day)

    # 1. One batch from a phase-5 trigger (sent twice, as after a crash of the readiness agent).
    trigger = phase5_trigger(day)
    started = time.monotonic()
    producer = kafka_clients.producer(settings)
    await producer.start()
    try:
        topic = settings.topic(TopicName.PHASE_TRIGGERS)
        for _ in range(2):
            await producer.send_and_wait(topic, encode(trigger), key=trigger.key.encode())
    finally:
        await producer.stop()
    counts = await wait_for_keys(bq_client, table_id, wanted, give_up_after=120, worker=worker)
    seconds = time.monotonic() - started
    assert set(counts) == wanted, (len(counts), len(wanted))
    assert all(n == 1 for n in counts.values()), {k: n for k, n in counts.items() if n != 1}

    completions = await read_topic(
        settings,
        TopicName.PHASE_COMPLETIONS,
        lambda found: any(PROCESSOR.encode() in v for _, v in found),
        give_up_after=60,
        quiet_for=2.0,
    )
    ours = [decode(PhaseCompletion, v) for _, v in completions if PROCESSOR.encode() in v]
    assert len(ours) == 1, ours
    assert ours[0].phase == 5
    assert ours[0].status == "success"
    assert ours[0].metadata["total_predictions"] == len(wanted)

    # 2. The same batch started again, and every request delivered a second time.
    resent_at = await start_again_and_redeliver(settings, day)
    # Every key re-predicted (newer created_at) and merged as an update, not a second row.
    await wait_for_keys(
        bq_client, table_id, wanted, since=resent_at, give_up_after=120, worker=worker
    )
    counts = await asyncio.to_thread(key_counts, bq_client, table_id)
    assert set(counts) == wanted, (len(counts), len(wanted))
    assert all(n == 1 for n in counts.values()), {k: n for k, n in counts.items() if n != 1}
    rows = await asyncio.to_thread(_query, bq_client, f"SELECT COUNT(*) AS n FROM `{table_id}`")  # noqa: S608
    assert rows[0]["n"] == len(wanted)

    completions = await read_topic(
        settings, TopicName.PHASE_COMPLETIONS, lambda _: False, give_up_after=0, quiet_for=1.0
    )
    assert sum(PROCESSOR.encode() in v for _, v in completions) == 1  # no second completion

    # 3. SIGTERM: the sink flushes and commits what it merged before the worker exits.
    worker.stop(timeout=30)
    log = worker.tail(lines=10_000)
    assert "prediction sink stopped" in log, log
    behind = await sink_lag(settings)
    assert not behind, (behind, [line for line in log.splitlines() if "sink" in line])
    print(
        f"\n{len(wanted)} predictions for {PLAYERS} players in BigQuery "
        f"{seconds:.1f} s after the trigger"
    )
