"""``GET /ready`` says 503 until the worker's tables are restored from their changelogs.

A worker is started on a changelog holding many records, so its table recovery takes a while;
``/ready`` is sampled all along, and every 200 must come after the worker printed its recovery
line (``phaseflow worker ready``, printed when Faust's changelog reading for the assignment is
done). Before, ``/ready`` answered 200 as soon as partitions were assigned.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agents.slowdown import DurationWindow
from streams.app import build_app
from streams.local.worker_process import WorkerProcess
from streams.settings import Settings
from streams.topics import ensure_topics

#: Changelog records to restore: enough for a recovery of seconds on a loaded machine.
RECORDS = 60_000


@dataclass(frozen=True)
class Sample:
    status: int | None  # None: no answer (the web server not up yet)
    reasons: tuple[str, ...]
    recovered: bool  # the worker's recovery line was in its log right after the answer


async def _fill_durations_changelog(settings: Settings) -> str:
    """RECORDS entries of the processor_durations table, straight into its changelog (keys of
    processors that do not exist, so no decision ever reads them)."""
    table = build_app(settings).app.tables["processor_durations"]
    changelog: str = table.changelog_topic.get_topic_name()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    changelog,
                    num_partitions=settings.topic_partitions,
                    replication_factor=1,
                    topic_configs={"cleanup.policy": "compact"},
                )
            ]
        )
    finally:
        await admin.close()
    value = DurationWindow().with_sample(42.0, 10).to_table()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=50)
    await producer.start()
    try:
        sends = [
            await producer.send(
                changelog,
                key=orjson.dumps(f"filler-{n}"),
                value=value,
                partition=n % settings.topic_partitions,
            )
            for n in range(RECORDS)
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return changelog


async def _sample_until_ready(
    settings: Settings, worker: WorkerProcess, *, after: int, give_up_after: float
) -> list[Sample]:
    """``/ready`` every 0.1 s until it answers 200; each answer with whether the worker had
    printed more than ``after`` recovery lines by then."""
    samples: list[Sample] = []
    deadline = time.monotonic() + give_up_after
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while time.monotonic() < deadline:
            status: int | None = None
            reasons: tuple[str, ...] = ()
            try:
                async with http.get(f"http://127.0.0.1:{settings.web_port}/ready") as response:
                    status = response.status
                    body: Any = await response.json()
                    reasons = tuple(body["reasons"])
            except (aiohttp.ClientError, TimeoutError):
                pass
            recovered = await asyncio.to_thread(worker.ready_count) > after
            samples.append(Sample(status, reasons, recovered))
            if status == 200:
                return samples
            await asyncio.sleep(0.1)
    raise AssertionError(f"/ready never said 200; last: {samples[-1:]}\n{worker.tail()}")


async def test_ready_waits_for_table_recovery_at_start(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    settings = make_settings()
    await ensure_topics(settings)
    await _fill_durations_changelog(settings)
    worker = start_worker(settings)
    samples = await _sample_until_ready(settings, worker, after=0, give_up_after=240)

    early = [s for s in samples if s.status == 200 and not s.recovered]
    assert not early, f"/ready said 200 before the tables were recovered: {early}"
    # Partitions assigned, tables not recovered yet: the reason says so.
    waiting = [s for s in samples if s.status == 503 and any("table" in r for r in s.reasons)]
    assert waiting, f"/ready never named table recovery as the reason: {samples}"
    assert "filler" not in worker.tail(200)  # nothing read the restored entries
