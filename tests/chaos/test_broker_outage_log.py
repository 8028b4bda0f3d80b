"""The broker away for a while under a running worker: the worker's log stays readable.

Every Kafka client of a worker retries on its own while the broker is away and aiokafka logs
each attempt (~370 lines a second on one worker before phaseflow.streams.core.log_repeats):
the line that says what is wrong scrolled away under thousands of copies. Here the worker (its
own Apache Kafka, default log level) loses the broker to kill -9 until its log has shown a
repeat counted (one repeat window and more) and ``/ready`` has said 503; its log of that time
must be a few lines per kind of failure, and the lag monitor must not take the outage for a
broker that cannot list a group's offsets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from tests.chaos.own_broker import worker_settings
from tests.chaos.probes import ReadyWatch
from tests.chaos.report import ChaosReport
from tests.fixtures.polling import poll
from tests.support.apache_kafka import RESTART_QUICKLY, ApacheKafka

pytestmark = [pytest.mark.chaos]

#: The repeat window of this worker: short, so that the outage shows the counted repeats.
WINDOW = 3.0
#: Lines the worker may write while the broker is away: a few per kind of failure and window
#: (the clients' retries, the lag monitor's and the readiness probe's own warnings).
MOST_LINES = 250
FAULT = "broker away (kill -9) under a worker until its log counts repeats"
#: A counted line is written one repeat window after the first of its kind, at the latest.
GIVE_UP_AFTER = 60.0
COUNTED = "more like this in the last"


async def test_a_broker_outage_is_a_few_lines_per_kind_of_failure(
    start_worker: Callable[..., WorkerProcess],
    unique_prefix: str,
    tmp_path: Path,
    chaos_report: ChaosReport,
) -> None:
    with ApacheKafka(properties=RESTART_QUICKLY) as kafka:
        # Defaults otherwise (guarantee auto, log level INFO), as a user runs it.
        settings = worker_settings(
            kafka.url,
            unique_prefix,
            tmp_path / "worker-data",
            kafka_producer_idempotence="auto",
            processing_guarantee="auto",
            log_repeat_window_seconds=WINDOW,
        )
        await ensure_topics(settings)
        worker = start_worker(settings, restart_on_exit=True)
        await asyncio.to_thread(worker.wait_ready, 180.0)
        async with ReadyWatch(settings.web_port) as watch:
            # The worker answering ready with the broker there, before it goes.
            await watch.ready_after(time.monotonic(), give_up_after=60)
            before = worker.log_path.stat().st_size
            kafka.kill()
            down_at = time.monotonic()

            def log_since_kill() -> str:
                return worker.log_path.read_bytes()[before:].decode(errors="replace")

            async def repeats_counted_and_not_ready() -> bool:
                seen_down = False in watch.answers_between(down_at, time.monotonic())
                return seen_down and COUNTED in log_since_kill()

            await poll(
                repeats_counted_and_not_ready,
                "a counted repeat in the worker's log and /ready 503",
                give_up_after=GIVE_UP_AFTER,
            )
            during = log_since_kill()
            await asyncio.to_thread(kafka.restart)
            up_at = time.monotonic()
            ready = await watch.ready_after(up_at, give_up_after=120)
            answers_while_down = watch.answers_between(down_at, up_at)
        log_text = worker.log_path.read_text(errors="replace")
    lines = during.splitlines()
    counted = [line for line in lines if COUNTED in line]
    assert False in answers_while_down, f"/ready never said 503 while down: {answers_while_down}"
    assert worker.restarts == 0, worker.tail()
    assert "Unable connect to node" in during, during[-3000:]
    assert len(lines) <= MOST_LINES, (
        f"{len(lines)} log lines in {up_at - down_at:.1f} s of outage (at most {MOST_LINES}); "
        "the last:\n" + "\n".join(lines[-40:])
    )
    assert counted, f"no line counted the repeats it stood for:\n{during[-3000:]}"
    # The outage is not a broker that cannot answer the all-offsets request (Tansu).
    assert "asking for explicit partitions from now on" not in log_text
    chaos_report.record(FAULT, "broker away (kill to restart asked)", up_at - down_at)
    chaos_report.record(FAULT, "log lines while the broker was away", len(lines))
    chaos_report.record(FAULT, "of them counting repeats not shown", len(counted))
    chaos_report.record(FAULT, "/ready 200 after broker back", ready)
