"""The prediction path on a real broker and the BigQuery emulator: 450 players, one batch.

Seed a slate, publish a phase-5 trigger (as the readiness agent would), and check that every
(player, system, line) key reaches ``{prefix}.predictions``, that exactly one phase-5
completion carries the right counts, that a repeated start duplicates nothing, and that the
workers loaded history with one query per batch, not one per player.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

from google.cloud import bigquery

from phaseflow.agents.predictions.batch_state import PROCESSOR
from phaseflow.agents.predictions.messages import make_command
from phaseflow.models.codec import decode, encode
from phaseflow.models.events import PhaseCompletion, PhaseTrigger, Prediction, PredictionRequest
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.side_producer import SideProducer
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.seed import seed
from tests.fixtures.prediction_keys import expected_prediction_keys

# Any date runs (an old one too: tests/integration/test_old_date_predictions.py); today here.
DAY = datetime.now(UTC).date()
PLAYERS = 450
BATCH = 100
# What the worker runs: the default registry (the fixtures set no registry_path).


def expected_keys() -> set[str]:
    return expected_prediction_keys(DAY, players=PLAYERS)


async def read_topic(
    settings: Settings,
    topic: TopicName,
    done: Callable[[list[tuple[str, bytes]]], bool],
    *,
    give_up_after: float,
    quiet_for: float = 0.0,
) -> list[tuple[str, bytes]]:
    """(key, value) of everything on ``topic`` until ``done`` and then ``quiet_for`` s."""
    consumer = kafka_clients.consumer(
        settings,
        settings.topic(topic),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    found: list[tuple[str, bytes]] = []
    try:
        deadline = time.monotonic() + give_up_after
        while not done(found) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [((r.key or b"").decode(), r.value or b"") for r in records]
        quiet_until = time.monotonic() + quiet_for
        while time.monotonic() < quiet_until:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [((r.key or b"").decode(), r.value or b"") for r in records]
    finally:
        await consumer.stop()
    return found


def phase5_trigger() -> PhaseTrigger:
    return PhaseTrigger(
        game_date=DAY,
        phase=5,
        reason="ready",
        rule="all_complete",
        completed=["ml_feature_store"],
        trigger_id=PhaseTrigger.make_id(DAY, 5, "ready"),
        triggered_at=datetime.now(UTC),
    )


async def test_450_players_every_key_once_one_completion_batched_history(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    bq_client: bigquery.Client,
    bq_settings: Settings,
) -> None:
    settings = make_settings(
        bigquery_endpoint=bq_settings.bigquery_endpoint,
        bigquery_project=bq_settings.bigquery_project,
        bigquery_dataset=bq_settings.bigquery_dataset,
        prediction_batch_size=BATCH,
        prediction_batch_wait_seconds=2.0,
    )
    summary = await asyncio.to_thread(seed, bq_client, settings.bigquery_dataset, DAY)
    assert summary.players == PLAYERS
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    wanted = expected_keys()

    trigger = phase5_trigger()
    producer = kafka_clients.producer(settings)
    await producer.start()
    try:
        topic = settings.topic(TopicName.PHASE_TRIGGERS)
        await producer.send_and_wait(topic, encode(trigger), key=trigger.key.encode())
        await producer.send_and_wait(topic, encode(trigger), key=trigger.key.encode())  # re-sent
    finally:
        await producer.stop()
    # A repeated start (as from the CLI or the API) for the same batch: nothing new happens.
    async with SideProducer(settings) as side:
        repeat = make_command(
            "start", DAY, issued_at=datetime.now(UTC), batch_id=f"{DAY}-r1", source="test"
        )
        await side.send(TopicName.PREDICTION_PROGRESS, repeat.key, encode(repeat))

    started = time.monotonic()
    predictions = await read_topic(
        settings,
        TopicName.PREDICTIONS,
        lambda found: {k for k, _ in found} >= wanted,
        give_up_after=180,
    )
    seconds = time.monotonic() - started
    keys = {k for k, _ in predictions}
    assert keys == wanted, (len(keys), len(wanted), worker.tail())
    decoded = [decode(Prediction, v) for _, v in predictions]
    assert all(p.key == k for p, (k, _) in zip(decoded, predictions, strict=True))
    assert {p.batch_id for p in decoded} == {f"{DAY}-r1"}

    completions = await read_topic(
        settings,
        TopicName.PHASE_COMPLETIONS,
        lambda found: any(PROCESSOR.encode() in v for _, v in found),
        give_up_after=60,
        quiet_for=3.0,
    )
    ours = [decode(PhaseCompletion, v) for _, v in completions if PROCESSOR.encode() in v]
    assert len(ours) == 1, ours
    [completion] = ours
    assert completion.phase == 5
    assert completion.status == "success"
    assert completion.metadata["expected_players"] == PLAYERS
    assert completion.metadata["completed_players"] == PLAYERS
    assert completion.metadata["total_predictions"] == len(wanted)

    requests = await read_topic(
        settings,
        TopicName.PREDICTION_REQUESTS,
        lambda found: len(found) >= PLAYERS,
        give_up_after=30,
        quiet_for=2.0,
    )
    assert len(requests) == PLAYERS  # the re-sent trigger and the repeated start added none
    assert {decode(PredictionRequest, v).key for _, v in requests} == {k for k, _ in requests}

    history_queries = [
        int(n) for n in re.findall(r"history queries (\d+)", worker.tail(lines=10_000))
    ]
    assert history_queries, worker.tail()
    assert max(history_queries) <= math.ceil(PLAYERS / BATCH), worker.tail()
    print(
        f"\n{len(wanted)} predictions for {PLAYERS} players in {seconds:.1f} s; "
        f"history queries: {max(history_queries)}"
    )
