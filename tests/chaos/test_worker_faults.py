"""Faults against one whole worker (readiness, predictions, BigQuery sink, web) while events flow.

One worker serves the module, on the session's Apache Kafka, with BigQuery reached through a
:class:`FaultProxy` in front of the session's emulator; each test uses its own game date. The
worker runs with ``exactly_once`` (the production setting), default session timeout, and a 2 s
BigQuery request timeout so that "slower than the timeout" takes seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import pytest
from google.cloud import bigquery

from phaseflow.models.codec import encode
from phaseflow.models.events import PhaseTrigger, Prediction
from phaseflow.sinks.install import SINK_LABEL
from phaseflow.sinks.merge_sql import TARGET_TABLE
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.bigquery_clients import RetryPolicy, ensure_dataset
from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.dlq import read_letters, replay_command
from phaseflow.streams.dlq_letters import LetterFilter
from phaseflow.streams.local.bigquery_emulator import BigQueryEmulator
from phaseflow.streams.local.ports import free_port
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.seed import seed
from phaseflow.streams.simulation import (
    TopicReader,
    TriggerReader,
    make_completion,
    phase_completions,
    simulate_day,
)
from tests.chaos.probes import (
    PLAYERS,
    ReadyWatch,
    committed_and_end,
    expected_prediction_keys,
    prediction_rows,
    progress_topic_view,
    scrape,
    sink_group,
)
from tests.chaos.report import ChaosReport
from tests.fixtures.bigquery import TEST_PROJECT
from tests.fixtures.brokers import Broker
from tests.fixtures.fault_proxy import FaultProxy
from tests.fixtures.polling import poll
from tests.integration.test_predictions_to_bigquery import phase5_trigger
from tests.integration.test_readiness_faults import (
    assert_one_trigger_per_phase,
    wait_until_committed,
)

pytestmark = [pytest.mark.chaos, pytest.mark.transactions]

BIGQUERY_TIMEOUT = 2.0
SLOW_BY = 5.0  # each request held this long: past the 2 s timeout
SLOW_FOR = 10.0
DOWN_FOR = 30.0
SETTLE_FOR = 3.0
MAX_MESSAGE_BYTES = 64 * 1024
OLDEST_UNMERGED_METRIC = "phaseflow_sink_oldest_unwritten_seconds"


def pipeline_today(settings: Settings) -> date:
    return datetime.now(ZoneInfo(settings.pipeline_timezone)).date()


@dataclass
class Service:
    settings: Settings
    worker: WorkerProcess
    proxy: FaultProxy
    table_id: str

    @property
    def today(self) -> date:
        return pipeline_today(self.settings)


@pytest.fixture(scope="module")
async def service(
    broker: Broker,
    bigquery_emulator: BigQueryEmulator,
    bq_client: bigquery.Client,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Service]:
    workdir: Path = tmp_path_factory.mktemp("chaos-worker")
    dataset = ensure_dataset(
        bq_client,
        f"chaos_{uuid.uuid4().hex[:12]}",
        timeout=30.0,
        retry=RetryPolicy(deadline_seconds=30.0).sync(),
    )
    prefix = f"t-chaos-{uuid.uuid4().hex[:8]}"
    with FaultProxy(bigquery_emulator.rest_port) as proxy:
        settings = Settings(
            broker_url=broker.url,
            topic_prefix=prefix,
            app_id=f"{prefix}-app",
            data_dir=workdir / "data",
            web_port=free_port(),
            kafka_producer_idempotence=True,
            processing_guarantee="exactly_once",
            log_level="INFO",
            bigquery_endpoint=proxy.endpoint,
            bigquery_project=TEST_PROJECT,
            bigquery_dataset=dataset.dataset_id,
            bigquery_timeout_seconds=BIGQUERY_TIMEOUT,
            bigquery_requests_per_second=100,
            # The first merge of a batch waits 4 s, so a fault injected as soon as predictions
            # appear finds rows consumed and not merged yet.
            sink_flush_seconds=4.0,
            sink_batch_rows=5000,
            max_message_bytes=MAX_MESSAGE_BYTES,
            # The watchdog would restart a worker whose readiness partitions are stuck this
            # long (streams/monitoring/install.py); production keeps the 120 s default.
            lag_window_seconds=30.0,
        )
        await ensure_topics(settings)
        # Supervised as in production (systemd Restart=always): a worker that exits is started
        # again (the report counts those restarts).
        worker = WorkerProcess(settings, workdir / "worker.log", restart_on_exit=True)
        worker.start()
        try:
            await asyncio.to_thread(worker.wait_ready, 180.0)
            yield Service(
                settings, worker, proxy, f"{TEST_PROJECT}.{dataset.dataset_id}.{TARGET_TABLE}"
            )
        finally:
            worker.stop(timeout=20)
            bq_client.delete_dataset(dataset, delete_contents=True, not_found_ok=True, timeout=30)


@pytest.fixture
def chaos_service(service: Service) -> Service:
    """The module's worker, running and with BigQuery reachable when a test begins."""
    if service.worker.ready_count() == 0:
        raise AssertionError(f"the module's worker is not running:\n{service.worker.tail()}")
    service.proxy.forward()
    return service


async def seed_day(bq_client: bigquery.Client, settings: Settings, day: date) -> set[str]:
    summary = await asyncio.to_thread(seed, bq_client, settings.bigquery_dataset, day)
    assert summary.players == PLAYERS
    return expected_prediction_keys(day)


async def readiness_status(port: int, day: date) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"http://127.0.0.1:{port}/status/{day.isoformat()}") as response,
    ):
        body: dict[str, Any] = await response.json()
    return body


async def first_prediction_of(settings: Settings, day: date, *, give_up_after: float) -> None:
    async with TopicReader(settings, TopicName.PREDICTIONS, Prediction) as reader:
        found = await reader.read_until(
            lambda seen: any(p.game_date == day for p in seen), give_up_after=give_up_after
        )
    assert any(p.game_date == day for p in found), "no prediction was produced"


async def triggers_of(settings: Settings, day: date) -> list[PhaseTrigger]:
    async with TriggerReader(settings) as reader:
        everything = await reader.read_until(lambda _: False, give_up_after=0, quiet_for=3)
    return [t for t in everything if t.game_date == day]


def log_highlights(path: Path, limit: int = 200) -> str:
    """The worker log from its last start on, without Faust's tables of topics and partitions
    (they bury the lines that say what happened), at most ``limit`` lines."""
    lines = path.read_text(errors="replace").splitlines()
    starts = [i for i, line in enumerate(lines) if "[^Worker]: Starting" in line]
    kept = [
        line
        for line in lines[starts[-1] if starts else 0 :]
        if line.strip()
        and not line.startswith(("|", "+", " "))
        and "Updating subscribed topics" not in line
    ]
    return "\n".join(kept[:limit])


def assert_each_key_once(rows: dict[str, int], wanted: set[str]) -> None:
    assert set(rows) == wanted, (
        f"missing {len(wanted - set(rows))}, unexpected {len(set(rows) - wanted)} "
        f"(of {len(wanted)} keys)"
    )
    doubled = {key: n for key, n in rows.items() if n != 1}
    assert not doubled, f"{len(doubled)} keys with more than one row: {list(doubled.items())[:5]}"


# --- 4. poison and oversized messages ---------------------------------------------------------


def poison_for(day: date) -> dict[bytes, str]:
    """Bad completions for ``day`` (each payload unique, each with its own execution id, so none
    is mistaken for a redelivery) -> the error type its dead letter must carry."""

    def variant(**changes: object) -> bytes:
        completion = make_completion("p2_odds_game_lines", day, 2)
        return orjson.dumps({**orjson.loads(encode(completion)), **changes})

    return {
        f"not json at all {day.isoformat()}".encode(): "not_json",
        variant(record_count="many"): "invalid_field",
        variant(phase="phase_9_nope"): "unknown_phase",
        variant(processor_name="no_such_processor"): "unknown_processor",
        variant().replace(b"+00:00", b""): "naive_timestamp",
        variant(pad="x" * MAX_MESSAGE_BYTES): "oversized",
    }


async def test_poison_and_oversized_messages_are_dead_lettered_and_good_ones_still_trigger(
    chaos_service: Service, chaos_report: ChaosReport
) -> None:
    settings = chaos_service.settings
    day = chaos_service.today - timedelta(days=3)
    good = phase_completions(load_registry(None), day, 2, today=chaos_service.today)
    bad = poison_for(day)
    assert len(set(bad.values())) == len(bad)
    before = await scrape(settings.web_port, "phaseflow_dead_letters_total")
    async with ReadyWatch(settings.web_port) as watch, CompletionPublisher(settings) as publisher:
        began = time.monotonic()
        # Interleaved: good, bad, good, bad, ...; half the bad ones keyless (other partitions).
        bad_items = list(bad)
        for index, event in enumerate(good):
            await publisher.publish(event)
            for raw in bad_items[index :: len(good)]:
                key = day.isoformat().encode() if index % 2 == 0 else None
                await publisher.publish_raw(key, raw)

        async def all_dead_lettered() -> bool:
            letters, _ = await read_letters(settings)
            ours = [item.letter for item in letters if item.letter.value_bytes in bad]
            return len(ours) >= len(bad)

        seconds = await poll(all_dead_lettered, "every bad input dead-lettered", give_up_after=90)
        triggers = await triggers_of(settings, day)
        ended = time.monotonic()
    letters, _ = await read_letters(settings)
    ours = [item.letter for item in letters if item.letter.value_bytes in bad]
    assert Counter(letter.value_bytes for letter in ours) == Counter(bad.keys()), "lost or doubled"
    assert {letter.value_bytes: letter.error_type for letter in ours} == bad
    assert all(
        letter.source_topic == settings.topic(TopicName.PHASE_COMPLETIONS) for letter in ours
    )
    assert [(t.phase, t.reason) for t in triggers] == [(3, "ready")]
    after = await scrape(settings.web_port, "phaseflow_dead_letters_total")
    counted = {
        dict(labels)["error_type"]: value - before.get(labels, 0.0)
        for labels, value in after.items()
    }
    assert {kind: n for kind, n in counted.items() if n} == dict.fromkeys(bad.values(), 1.0)
    answers = watch.answers_between(began, ended)
    assert answers
    assert all(answers), "/ready went false on bad input"
    chaos_report.record("poison and oversized input", "bad inputs sent", len(bad))
    chaos_report.record("poison and oversized input", "dead letters (exact match)", len(ours))
    chaos_report.record("poison and oversized input", "all dead-lettered after", seconds)
    chaos_report.record("poison and oversized input", "/ready false samples", 0)


# --- 1. kill -9 the worker mid-batch --------------------------------------------------------


async def test_kill_9_mid_prediction_batch_loses_and_doubles_nothing(
    chaos_service: Service, bq_client: bigquery.Client, chaos_report: ChaosReport
) -> None:
    settings, worker = chaos_service.settings, chaos_service.worker
    today = chaos_service.today
    day = today - timedelta(days=1)  # last night's games: overnight mode, every processor
    wanted = await seed_day(bq_client, settings, day)
    fault = "kill -9 worker mid prediction batch"
    async with ReadyWatch(settings.web_port) as watch:
        running_day = asyncio.create_task(
            simulate_day(
                settings,
                load_registry(None),
                day,
                today=today,
                give_up_after=150,
                real_phases=frozenset({5}),  # the worker's coordinator, workers and sink
            )
        )
        await first_prediction_of(settings, day, give_up_after=150)
        merged_before = await asyncio.to_thread(
            prediction_rows, bq_client, chaos_service.table_id, day
        )
        ready_lines = worker.ready_count()
        watchdog_restarts = worker.log_path.read_text(errors="replace").count("WATCHDOG")
        worker.kill()
        restarted_at, restarted_wall = time.monotonic(), datetime.now(UTC)
        worker.start()
        rebalanced = await asyncio.to_thread(worker.wait_ready, 180.0, after=ready_lines)
        ready = await watch.ready_after(restarted_at, give_up_after=180)
        status_after_restart = await readiness_status(settings.web_port, day)
        result = await running_day

        async def all_keys_merged() -> bool:
            rows = await asyncio.to_thread(prediction_rows, bq_client, chaos_service.table_id, day)
            return set(rows) >= wanted

        await poll(all_keys_merged, "every key in BigQuery", give_up_after=180)
        merged = time.monotonic() - restarted_at
    # What the worker decided before the kill survives it (tables restored from changelogs).
    done_before = {p["phase"]: p["done"] for p in status_after_restart["phases"]}
    assert done_before.get(2), f"readiness state of {day} lost in the restart: {done_before}"
    if not result.finished:
        view = await progress_topic_view(settings, day)
        raise AssertionError(
            f"the day did not finish: {result}\n{view}\n"
            f"worker log since the restart (subscription tables left out):\n"
            f"{log_highlights(worker.log_path)}"
        )
    # The restarted worker consumed every request by itself: no watchdog restart was needed
    # (under faust-streaming's take_events it was, see agents/predictions/request_consumer.py).
    log_text = worker.log_path.read_text(errors="replace")
    assert log_text.count("WATCHDOG") == watchdog_restarts, worker.tail()
    # Mid-batch: the kill came before the batch was all in BigQuery.
    assert len(merged_before) < len(wanted)
    assert_one_trigger_per_phase(
        await triggers_of(settings, day), {(day, p) for p in (3, 4, 5, 6)}, strict=True
    )
    await wait_until_committed(settings)  # every completion processed: none lost
    rows = await asyncio.to_thread(prediction_rows, bq_client, chaos_service.table_id, day)
    assert_each_key_once(rows, wanted)
    # By when each trigger was fired (its triggered_at), not when the simulation read it.
    after_fault = [(t.triggered_at - restarted_wall).total_seconds() for t in result.triggers]
    after_fault = [seconds for seconds in after_fault if seconds > 0]
    chaos_report.record(fault, "keys expected (players x lines x systems)", len(wanted))
    chaos_report.record(fault, "keys merged before the kill", len(merged_before))
    chaos_report.record(fault, "worker rebalanced after restart", rebalanced)
    chaos_report.record(fault, "/ready 200 after restart", ready)
    if after_fault:
        chaos_report.record(fault, "first trigger fired after restart", min(after_fault))
    chaos_report.record(fault, "every key merged once after restart", merged)
    chaos_report.record(fault, "supervisor restarts of the worker so far", worker.restarts)


# --- 3. BigQuery slow past the timeout, then down for 30 s ----------------------------------


async def oldest_unmerged_age(port: int) -> float:
    samples = await scrape(port, OLDEST_UNMERGED_METRIC)
    return samples.get((("sink", SINK_LABEL),), 0.0)


async def publish_trigger(settings: Settings, trigger: PhaseTrigger) -> None:
    producer = kafka_clients.producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic(TopicName.PHASE_TRIGGERS), encode(trigger), key=trigger.key.encode()
        )
    finally:
        await producer.stop()


async def hold_fault(seconds: float, port: int, ages: list[float]) -> None:
    """Keep the fault on for ``seconds`` (the fault's length is the point), sampling the sink's
    oldest-unmerged age once a second."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        ages.append(await oldest_unmerged_age(port))
        await asyncio.sleep(min(1.0, max(0.0, until - time.monotonic())))


async def test_bigquery_slow_then_down_for_30_s_loses_and_doubles_nothing(
    chaos_service: Service, bq_client: bigquery.Client, chaos_report: ChaosReport
) -> None:
    settings, proxy = chaos_service.settings, chaos_service.proxy
    day = chaos_service.today - timedelta(days=2)
    wanted = await seed_day(bq_client, settings, day)
    fault = "BigQuery slow (5 s > 2 s timeout) 10 s, then down 30 s"
    group = sink_group(settings)
    ages: list[float] = []

    def rows_now() -> dict[str, int]:
        return prediction_rows(bq_client, chaos_service.table_id, day)

    async with ReadyWatch(settings.web_port) as watch:
        await publish_trigger(settings, phase5_trigger(day))
        await first_prediction_of(settings, day, give_up_after=120)
        proxy.slow(SLOW_BY)
        await hold_fault(SLOW_FOR, settings.web_port, ages)
        proxy.refuse()
        down_at = time.monotonic()
        # A request the emulator received just before may still finish: settle, then snapshot.
        await hold_fault(SETTLE_FOR, settings.web_port, ages)
        committed_at_down, _ = await committed_and_end(settings, group, TopicName.PREDICTIONS)
        rows_at_down = await asyncio.to_thread(rows_now)
        await hold_fault(DOWN_FOR - (time.monotonic() - down_at), settings.web_port, ages)
        committed_at_up, end_at_up = await committed_and_end(settings, group, TopicName.PREDICTIONS)
        rows_at_up = await asyncio.to_thread(rows_now)
        proxy.forward()
        up_at = time.monotonic()
        ready_answers = watch.answers_between(down_at, up_at)

        async def backlog_merged() -> bool:
            return await oldest_unmerged_age(settings.web_port) == 0.0

        backlog = await poll(backlog_merged, "the sink's backlog merged", give_up_after=120)

        async def all_keys_merged() -> bool:
            # Requests whose history could not be loaded during the outage were dead-lettered
            # (history_unavailable); replaying them is the documented recovery.
            await replay_command(
                settings,
                LetterFilter(reason="history_unavailable"),
                dry_run=False,
                out=io.StringIO(),
            )
            return set(await asyncio.to_thread(rows_now)) >= wanted

        await poll(all_keys_merged, "every key in BigQuery after replay", give_up_after=150)
        merged = time.monotonic() - up_at

        async def sink_committed_everything() -> bool:
            committed, end = await committed_and_end(settings, group, TopicName.PREDICTIONS)
            return committed == end

        await poll(sink_committed_everything, "the sink's offsets committed", give_up_after=60)
    assert proxy.counters.refused > 0, "nobody tried BigQuery while it was down"
    assert proxy.counters.delayed_chunks > 0, "nobody tried BigQuery while it was slow"
    # Nothing committed and nothing merged while BigQuery was unreachable...
    assert committed_at_up == committed_at_down
    assert rows_at_up == rows_at_down
    # ... while predictions waited, unmerged, in the sink (the offsets behind them uncommitted).
    assert end_at_up > committed_at_up
    peak = max(ages)
    assert peak >= DOWN_FOR, f"oldest-unmerged age peaked at {peak:.1f} s"
    assert_each_key_once(await asyncio.to_thread(rows_now), wanted)
    letters, _ = await read_letters(settings)
    history_letters = sum(
        1
        for item in letters
        if item.letter.error_type == "history_unavailable"
        and base64.b64decode(item.letter.value).find(day.isoformat().encode()) >= 0
    )
    chaos_report.record(fault, "keys expected", len(wanted))
    chaos_report.record(
        fault, "requests dead-lettered (history unavailable), replayed", history_letters
    )
    chaos_report.record(fault, "oldest unmerged row age, peak", peak)
    chaos_report.record(fault, "/ready false samples while down", ready_answers.count(False))
    chaos_report.record(fault, "backlog merged after BigQuery back", backlog)
    chaos_report.record(fault, "every key merged once after BigQuery back", merged)
