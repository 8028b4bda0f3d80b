"""A bare Faust agent over the readiness benchmark's backlog: the floor Faust itself sets.

Run by bench/readiness.py as ``python -m bench.faust_baseline worker`` with its settings in the
environment: ``BASELINE_MODE`` = ``noop`` (iterate events only), ``table`` (one table write per
event, as the readiness agent does at least) or ``queue`` (no agent and no stream: a task takes
the events the conductor put on a subscribed channel's queue, whatever is there at once, and
acks them; Faust's fetch, decode and delivery without its per-event stream), ``BASELINE_TOPIC``,
``BASELINE_COUNT`` and the usual ``PHASEFLOW_*`` broker settings.
``BASELINE_GUARANTEE=exactly_once`` runs the agent under Kafka transactions with the worker's
commit interval (``PHASEFLOW_KAFKA_COMMIT_INTERVAL_SECONDS``): the floor Faust's exactly-once
machinery sets for the worker; the default is Faust's own ``at_least_once`` with its own commit
interval. Prints ``baseline events/s <n>`` and exits.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from typing import Any

import faust

from phaseflow.streams.core.settings import Settings

MODE = os.environ.get("BASELINE_MODE", "noop")
COUNT = int(os.environ.get("BASELINE_COUNT", "0"))
GUARANTEE = os.environ.get("BASELINE_GUARANTEE", "at_least_once")
settings = Settings()


def _data_dir() -> str:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return str(settings.data_dir)


# Under exactly_once the worker's commit interval: each commit ends a transaction per partition.
guarantee_options: dict[str, Any] = (
    {
        "processing_guarantee": "exactly_once",
        "broker_commit_interval": settings.kafka_commit_interval_seconds,
    }
    if GUARANTEE == "exactly_once"
    else {}
)
app = faust.App(
    f"baseline-{MODE}-{GUARANTEE}-{uuid.uuid4().hex[:6]}",
    broker=settings.broker_url,
    store="memory://",
    # Under the benchmark's data directory (a temporary one bench.readiness deletes): this
    # process ends with os._exit and cannot delete its own.
    datadir=tempfile.mkdtemp(prefix="faust-baseline-", dir=_data_dir()),
    topic_partitions=settings.kafka_topic_partitions,
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
    stream_recovery_delay=0.0,
    broker_session_timeout=settings.kafka_session_timeout_seconds,
    broker_heartbeat_interval=settings.kafka_heartbeat_interval_seconds,
    **guarantee_options,
)
topic = app.topic(
    os.environ.get("BASELINE_TOPIC", "missing"),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
table = app.Table("baseline", default=None, partitions=settings.kafka_topic_partitions)
progress: dict[str, Any] = {"seen": 0, "started": None}


def _count(n: int) -> None:
    if progress["started"] is None:
        progress["started"] = time.perf_counter()
    progress["seen"] += n
    if progress["seen"] >= COUNT:
        rate = COUNT / (time.perf_counter() - progress["started"])
        print(f"baseline events/s {rate:.1f}", flush=True)
        os._exit(0)


if MODE == "queue":

    @app.task
    async def drain() -> None:
        # What an agent's stream does per event, minus the stream: the clone registers with
        # the conductor (which then subscribes to the topic); tracking a message before its
        # ack is what lets the consumer commit past it.
        channel = topic.__aiter__()
        queue = channel.queue
        consumer = app.consumer
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            for event in batch:
                message = event.message
                if not message.tracked:
                    message.tracked = True
                    consumer.track_message(message)
                event.ack()
            _count(len(batch))

else:

    @app.agent(topic)
    async def baseline(stream: Any) -> None:
        async for event in stream.events():
            if MODE == "table":
                table[event.message.key] = {"seen": progress["seen"]}
            _count(1)


if __name__ == "__main__":
    app.main()
