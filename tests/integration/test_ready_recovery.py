"""``GET /ready`` says 503 until the worker's tables are restored from their changelogs.

A worker is started on a changelog holding many records, so its table recovery takes a while;
``/ready`` is sampled all along, and every 200 must come after Faust logged the end of that
recovery (``Worker ready``, the last step of its recovery). Before, ``/ready`` answered 200 as
soon as partitions were assigned, and during a reload of tables in a running worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiokafka.admin import NewTopic

from phaseflow.agents.slowdown import DurationWindow
from phaseflow.streams.app import build_app
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.local.ports import free_port
from phaseflow.streams.local.worker_process import WorkerProcess
from tests.fixtures.polling import poll

#: What Faust logs as the last step of a recovery (after which /ready may say 200); and when
#: it starts reading changelogs.
RECOVERY_DONE = "[^---Recovery]: Worker ready"
RESTORE_BEGUN = "[^---Recovery]: Restoring state from changelog topics"
#: Changelog records to restore: enough for a recovery of seconds on a loaded machine.
RECORDS = 30_000


@dataclass(frozen=True)
class Sample:
    status: int | None  # None: no answer (the web server not up yet)
    reasons: tuple[str, ...]
    recovered: bool  # RECOVERY_DONE was in the worker's log right after the answer


async def _fill_durations_changelog(settings: Settings) -> str:
    """RECORDS entries of the processor_durations table, straight into its changelog (keys of
    processors that do not exist, so no decision ever reads them)."""
    table = build_app(settings).app.tables["processor_durations"]
    changelog: str = table.changelog_topic.get_topic_name()
    admin = kafka_clients.admin(settings)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    changelog,
                    num_partitions=settings.kafka_topic_partitions,
                    replication_factor=1,
                    topic_configs={"cleanup.policy": "compact"},
                )
            ]
        )
    finally:
        await admin.close()
    value = DurationWindow().with_sample(42.0, 10).to_table()
    producer = kafka_clients.producer(settings, linger_ms=50)
    await producer.start()
    try:
        sends = [
            await producer.send(
                changelog,
                key=orjson.dumps(f"filler-{n}"),
                value=value,
                partition=n % settings.kafka_topic_partitions,
            )
            for n in range(RECORDS)
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    return changelog


def _log_count(worker: WorkerProcess, line: str) -> int:
    if not worker.log_path.exists():
        return 0
    return worker.log_path.read_text(errors="replace").count(line)


async def _sample_until_ready(
    settings: Settings,
    worker: WorkerProcess,
    *,
    after: int,
    give_up_after: float,
    until_503_first: bool = False,
) -> list[Sample]:
    """``/ready`` every 0.1 s until it answers 200 (``until_503_first``: a 200 after a 503);
    each answer with whether the worker had printed more than ``after`` recovery lines by
    then."""
    samples: list[Sample] = []
    seen_503 = not until_503_first
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
            recovered = await asyncio.to_thread(_log_count, worker, RECOVERY_DONE) > after
            samples.append(Sample(status, reasons, recovered))
            seen_503 = seen_503 or status == 503
            if status == 200 and seen_503:
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


@dataclass(frozen=True)
class RestartSample:
    status: int | None
    restores_begun: int  # Faust's log line when it starts reading changelogs
    restores_done: int  # RECOVERY_DONE lines


async def _sample_restores(
    settings: Settings, worker: WorkerProcess, into: list[RestartSample]
) -> None:
    """``/ready`` every 0.1 s, each answer with the worker's restore counts right after it."""
    timeout = aiohttp.ClientTimeout(total=3)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while True:
            status: int | None = None
            try:
                async with http.get(f"http://127.0.0.1:{settings.web_port}/ready") as response:
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                pass
            log = await asyncio.to_thread(worker.log_path.read_text, errors="replace")
            into.append(RestartSample(status, log.count(RESTORE_BEGUN), log.count(RECOVERY_DONE)))
            await asyncio.sleep(0.1)


async def test_ready_waits_for_a_reload_of_tables_in_a_running_worker(
    make_settings: Callable[..., Settings],
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """A running worker whose tables were recovered once (Faust's ``recovery.completed`` stays
    set) gets partitions back from a second worker that leaves, and restores their changelogs
    from the start (the memory store keeps no offsets): 503 until that reload is done."""
    settings = make_settings()
    await ensure_topics(settings)
    await _fill_durations_changelog(settings)
    first = start_worker(settings)
    await asyncio.to_thread(first.wait_ready, 240.0)
    # Its own data directory, so its own default PHASEFLOW_WORKER_ID (static membership).
    second = start_worker(
        settings.model_copy(
            update={"web_port": free_port(), "data_dir": settings.data_dir.parent / "second"}
        )
    )
    await asyncio.to_thread(second.wait_ready, 240.0)
    await poll(
        lambda: asyncio.to_thread(lambda: first.ready_count() >= 2),
        "the first worker's rebalance after the second joined",
        give_up_after=120,
    )
    samples: list[RestartSample] = []
    sampler = asyncio.create_task(_sample_restores(settings, first, samples))
    try:
        await poll(lambda: _async(bool(samples)), "a first /ready sample", give_up_after=30)
        before = samples[-1]
        await asyncio.to_thread(second.stop)

        async def reloaded_and_ready() -> bool:
            last = samples[-1]
            return last.status == 200 and last.restores_done > before.restores_done

        await poll(reloaded_and_ready, "tables reloaded and /ready 200", give_up_after=240)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    after = samples[samples.index(before) :]

    def reloading(sample: RestartSample) -> bool:
        """A restore begun since ``before`` that the worker has not announced done."""
        begun = sample.restores_begun - before.restores_begun
        return begun > 0 and begun > sample.restores_done - before.restores_done

    assert any(reloading(s) for s in after), f"no reload was observed: {after}"
    early = [s for s in after if s.status == 200 and reloading(s)]
    assert not early, f"/ready said 200 while tables were reloading: {early}"


async def _async(value: bool) -> bool:
    return value
