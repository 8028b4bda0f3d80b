"""What the fault tests watch from outside the worker: /ready, /metrics, BigQuery rows, offsets."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date

import aiohttp
import orjson
from aiokafka import TopicPartition
from google.api_core.exceptions import NotFound
from google.cloud import bigquery
from prometheus_client.parser import text_string_to_metric_families

from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.bigquery_clients import RetryPolicy
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.log_read import read_to_end
from tests.fixtures.prediction_keys import expected_prediction_keys as prediction_keys

PLAYERS = 450
_BQ_TIMEOUT = 30.0


@dataclass
class ReadySample:
    at: float  # time.monotonic()
    ready: bool | None  # None: nothing answered (the worker is down)


@dataclass
class ReadyWatch:
    """Polls ``GET /ready`` of a worker in the background and keeps every answer."""

    port: int
    every: float = 0.25
    samples: list[ReadySample] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _sampled: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> ReadyWatch:
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        url = f"http://127.0.0.1:{self.port}/ready"
        timeout = aiohttp.ClientTimeout(total=3)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                ready: bool | None
                try:
                    async with session.get(url) as response:
                        ready = response.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ready = None
                self.samples.append(ReadySample(time.monotonic(), ready))
                self._sampled.set()
                await asyncio.sleep(self.every)  # the sampling rate: the watch is a time series

    def answers_between(self, start: float, end: float) -> list[bool | None]:
        return [s.ready for s in self.samples if start <= s.at <= end]

    async def ready_after(self, since: float, *, give_up_after: float) -> float:
        """Seconds from ``since`` to the first 200 from /ready at or after it."""
        deadline = time.monotonic() + give_up_after
        while time.monotonic() < deadline:
            for sample in self.samples:
                if sample.at >= since and sample.ready:
                    return sample.at - since
            self._sampled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sampled.wait(), deadline - time.monotonic())
        raise AssertionError(f"/ready not 200 within {give_up_after} s of the fault's end")


async def scrape(port: int, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one Prometheus metric from the worker's ``/metrics``, by label set."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        text = await response.text()
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == metric
    }


def expected_prediction_keys(day: date) -> set[str]:
    """``{player}:{system}:{line}`` (the BigQuery rows' key without the date) of the slate."""
    return {key.split(":", 1)[1] for key in prediction_keys(day, players=PLAYERS)}


def prediction_rows(client: bigquery.Client, table_id: str, day: date) -> dict[str, int]:
    """``{player}:{system}:{line_key}`` -> number of rows of ``day`` in the predictions table."""
    sql = (
        "SELECT player_lookup, system_id, line_key, COUNT(*) AS n "  # noqa: S608 - our table
        f"FROM `{table_id}` WHERE game_date = @day GROUP BY player_lookup, system_id, line_key"
    )
    config = bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter("day", "DATE", day.isoformat())]
    )
    try:
        job = client.query(
            sql,
            job_config=config,
            timeout=_BQ_TIMEOUT,
            retry=RetryPolicy(deadline_seconds=_BQ_TIMEOUT).sync(),
            job_retry=None,
        )
        rows = list(job.result(timeout=_BQ_TIMEOUT))
    except NotFound:  # the sink creates the table when it first starts
        return {}
    return {f"{r['player_lookup']}:{r['system_id']}:{r['line_key']}": r["n"] for r in rows}


async def committed_and_end(settings: Settings, group: str, topic: TopicName) -> tuple[int, int]:
    """(offsets ``group`` committed, end offsets) summed over ``topic``'s partitions."""
    name = settings.topic(topic)
    probe = kafka_clients.consumer(settings, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        tps = [TopicPartition(name, p) for p in range(settings.kafka_topic_partitions)]
        ends = await probe.end_offsets(tps)
        committed = [(await probe.committed(tp)) or 0 for tp in tps]
        return sum(committed), sum(ends.values())
    finally:
        await probe.stop()


def sink_group(settings: Settings) -> str:
    return f"{settings.app_id}.bigquery-predictions-sink"


async def progress_topic_view(settings: Settings, day: date) -> str:
    """What the app's group did with ``day``'s records on the progress topic, per partition:
    its committed offset, the end offset, and the committed records of ``day`` there (commands
    by kind, player reports per batch and how many distinct players). Says whether reports the
    coordinator never counted were on the topic, and whether the group committed past them."""
    name = settings.topic(TopicName.PREDICTION_PROGRESS)
    tps = [TopicPartition(name, p) for p in range(settings.kafka_topic_partitions)]
    probe = kafka_clients.consumer(settings, group_id=settings.app_id, enable_auto_commit=False)
    await probe.start()
    try:
        ends = await probe.end_offsets(tps)
        committed = {tp: await probe.committed(tp) for tp in tps}
    finally:
        await probe.stop()
    records: dict[int, list[tuple[int, dict[str, object]]]] = {tp.partition: [] for tp in tps}
    for record in await read_to_end(settings, TopicName.PREDICTION_PROGRESS):
        with contextlib.suppress(ValueError, TypeError):
            value = orjson.loads(record.value or b"")
            if isinstance(value, dict) and value.get("game_date") == day.isoformat():
                records[record.partition].append((record.offset, value))
    lines = [f"{name} (group {settings.app_id}):"]
    for tp in tps:
        mine = records[tp.partition]
        kinds = Counter(str(v.get("kind")) for _, v in mine)
        players: dict[str, set[str]] = {}
        for _, value in mine:
            if value.get("kind") == "done":
                players.setdefault(str(value.get("batch_id")), set()).add(
                    str(value.get("player_lookup"))
                )
        offsets = [o for o, _ in mine]
        span = f"offsets {min(offsets)}-{max(offsets)}" if offsets else "none"
        lines.append(
            f"  [{tp.partition}] committed {committed[tp]}, end {ends[tp]}; {day}: "
            f"{dict(kinds)} ({span}); distinct players per batch "
            f"{ {b: len(p) for b, p in players.items()} }"
        )
    return "\n".join(lines)
