"""Closing-note run of issue 15: four consumer groups, `phaseflow lag` over time, with timings.

``python -m bench.lag_groups [--window 30] [--rate 20] [--print-every 5]``

On Apache Kafka (started from its jars, or ``PHASEFLOW_BROKER_URL``), with a producer writing
``--rate`` records/s to a plain topic and an exactly_once (transactional) producer writing the
same rate to a second topic, one group each:

* ``stopped``: keeps up, then its consumer stops at ``CHANGE_AT`` (nothing commits any more);
* ``slow``: keeps up, then from ``CHANGE_AT`` consumes at half the produce rate;
* ``rewound``: keeps up; at ``REWIND_AT`` its offsets are reset to the earliest (a replay),
  then it catches up again;
* ``transactional``: a read_committed consumer of the transactional topic that keeps up and
  commits "last processed + 1" (as Faust does), so it sits one below the end (the commit
  marker) all the time.

A lag monitor discovers the four groups the way ``phaseflow lag`` does (include pattern: this
run's prefix), samples every ``--interval`` and prints the ``phaseflow lag`` table every
``--print-every`` seconds. At the end: when each group reached its status, measured from the
event that should cause it, and one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic

from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.monitoring.lag import LagMonitor
from phaseflow.streams.monitoring.lag_cli import format_table
from phaseflow.streams.monitoring.lag_status import LagStatus
from phaseflow.streams.text_table import aligned_rows

#: Seconds after the start at which "stopped" stops and "slow" halves its rate.
CHANGE_AT: Final = 10.0
#: Seconds after the start at which "rewound" resets its offsets to the earliest.
REWIND_AT: Final = 15.0
COMMIT_EVERY: Final = 0.5
GROUPS: Final = ("stopped", "slow", "rewound", "transactional")


@dataclass
class Run:
    """What the run's tasks did and when (seconds since the start)."""

    started: float = field(default_factory=time.monotonic)
    last_commit: dict[str, float] = field(default_factory=dict)
    events: dict[str, float] = field(default_factory=dict)

    def now(self) -> float:
        return time.monotonic() - self.started


@contextlib.contextmanager
def _broker() -> Iterator[str]:
    external = os.environ.get("PHASEFLOW_BROKER_URL")
    if external:
        yield external
        return
    from tests.support.apache_kafka import ApacheKafka

    with ApacheKafka() as kafka:
        yield kafka.url


async def _produce(settings: Settings, topic: str, rate: float, stop: asyncio.Event) -> None:
    producer = kafka_clients.producer(settings, enable_idempotence=False)
    await producer.start()
    try:
        n = 0
        while not stop.is_set():
            await producer.send_and_wait(topic, b"%d" % n, partition=0)
            n += 1
            await asyncio.sleep(1 / rate)
    finally:
        await producer.stop()


async def _produce_transactions(
    settings: Settings, topic: str, rate: float, stop: asyncio.Event
) -> None:
    producer = kafka_clients.producer(
        settings, transactional_id=f"{topic}.producer", enable_idempotence=True
    )
    await producer.start()
    try:
        n = 0
        while not stop.is_set():
            async with producer.transaction():
                await producer.send(topic, b"%d" % n, partition=0)
            n += 1
            await asyncio.sleep(1 / rate)
    finally:
        await producer.stop()


async def _consume(
    settings: Settings,
    group: str,
    topic: str,
    run: Run,
    stop: asyncio.Event,
    *,
    rate: float,
    name: str,
) -> None:
    """One group's consumer; what it does at CHANGE_AT / REWIND_AT depends on ``name``."""
    tp = TopicPartition(topic, 0)
    consumer: AIOKafkaConsumer = kafka_clients.consumer(
        settings,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        next_offset: int | None = None
        last_commit = 0.0
        rewound = False
        while not stop.is_set():
            now = run.now()
            if name == "stopped" and now >= CHANGE_AT:
                run.events["stopped"] = run.last_commit.get(name, now)
                return  # the consumer dies: no more reads, no more commits
            if name == "rewound" and not rewound and now >= REWIND_AT:
                await consumer.seek_to_beginning(tp)
                await consumer.commit({tp: 0})
                run.events["rewound"] = run.now()
                rewound = True
                next_offset = 0
                last_commit = time.monotonic()
            slow = name == "slow" and now >= CHANGE_AT
            if slow and "slow" not in run.events:
                run.events["slow"] = now
            batches = await consumer.getmany(tp, timeout_ms=100, max_records=1 if slow else 500)
            for record in batches.get(tp, []):
                next_offset = record.offset + 1
                if slow:
                    await asyncio.sleep(2 / rate)  # half the produce rate
            if next_offset is not None and time.monotonic() - last_commit >= COMMIT_EVERY:
                await consumer.commit({tp: next_offset})
                last_commit = time.monotonic()
                run.last_commit[name] = run.now()
    finally:
        await consumer.stop()


@dataclass
class Timeline:
    """Each group's status at each sample: (seconds since the start, status)."""

    samples: dict[str, list[tuple[float, LagStatus]]] = field(default_factory=dict)

    def add(self, group: str, at: float, status: LagStatus) -> None:
        self.samples.setdefault(group, []).append((at, status))

    def first(self, group: str, status: LagStatus, after: float = 0.0) -> float | None:
        return next(
            (at for at, seen in self.samples.get(group, []) if seen is status and at >= after),
            None,
        )

    def seen(self, group: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, status in self.samples.get(group, []):
            counts[str(status)] = counts.get(str(status), 0) + 1
        return counts


async def _create_topics(settings: Settings, names: list[str]) -> None:
    # One partition each, made before any client asks for them (no "topic not found" noise).
    admin = kafka_clients.admin(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1) for name in names])
    finally:
        await admin.close()


def _delay(reached: float | None, cause: float | None) -> float | None:
    return None if reached is None or cause is None else round(reached - cause, 1)


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    prefix = f"laggroups-{uuid.uuid4().hex[:6]}"
    settings = Settings(
        broker_url=url,
        topic_prefix=prefix,
        app_id=f"{prefix}-app",
        lag_window_seconds=args.window,
        lag_sample_interval_seconds=args.interval,
        lag_include=rf"{prefix}\..*",
    )
    events, tx_events = f"{prefix}.events", f"{prefix}.tx-events"
    group = {name: f"{prefix}.{name}" for name in GROUPS}
    duration = CHANGE_AT + args.window + args.tail
    await _create_topics(settings, [events, tx_events])
    stop = asyncio.Event()
    run_state = Run()
    tasks = [
        asyncio.create_task(_produce(settings, events, args.rate, stop)),
        asyncio.create_task(_produce_transactions(settings, tx_events, args.rate, stop)),
    ]
    for name in GROUPS:
        topic = tx_events if name == "transactional" else events
        tasks.append(
            asyncio.create_task(
                _consume(settings, group[name], topic, run_state, stop, rate=args.rate, name=name)
            )
        )
    timeline = Timeline()
    last_print = -args.print_every
    monitor = LagMonitor(settings, interval=args.interval)
    await monitor.start(background=False)
    try:
        while run_state.now() < duration:
            rows = await monitor.sample_once()
            at = run_state.now()
            for name in GROUPS:
                timeline.add(name, at, monitor.group_status(group[name]))
            if at - last_print >= args.print_every:
                last_print = at
                print(f"\n--- t = {at:5.1f} s")
                print(format_table(rows, monitor.groups), flush=True)
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise RuntimeError("a producer or consumer failed") from task.exception()
            await asyncio.sleep(max(0.0, args.interval - (run_state.now() - at)))
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await monitor.stop()

    causes = run_state.events
    figures = {
        "window_s": args.window,
        "interval_s": args.interval,
        "rate_per_s": args.rate,
        "stopped_stall_after_last_commit_s": _delay(
            timeline.first("stopped", LagStatus.STALL, causes.get("stopped", 0.0)),
            causes.get("stopped"),
        ),
        "stopped_stop_after_last_commit_s": _delay(
            timeline.first("stopped", LagStatus.STOP), causes.get("stopped")
        ),
        "slow_warn_after_slowing_s": _delay(
            timeline.first("slow", LagStatus.WARN), causes.get("slow")
        ),
        "rewound_rewind_after_reset_s": _delay(
            timeline.first("rewound", LagStatus.REWIND), causes.get("rewound")
        ),
        "statuses_seen": {name: timeline.seen(name) for name in GROUPS},
    }
    cells = [("GROUP", "CAUSE", "AT_S", "STATUS", "REACHED_AT_S", "AFTER_S")]
    for name, cause, status in (
        ("stopped", "last commit", LagStatus.STALL),
        ("stopped", "last commit", LagStatus.STOP),
        ("slow", "half rate from", LagStatus.WARN),
        ("rewound", "offsets reset to 0", LagStatus.REWIND),
    ):
        caused = causes.get(name)
        reached = timeline.first(name, status, caused or 0.0)
        cells.append(
            (
                name,
                cause,
                "-" if caused is None else f"{caused:.1f}",
                str(status),
                "-" if reached is None else f"{reached:.1f}",
                "-" if reached is None or caused is None else f"{reached - caused:.1f}",
            )
        )
    print(f"\ntimings (window {args.window:g} s, sample interval {args.interval:g} s):")
    print("\n".join(line.rstrip() for line in aligned_rows(cells)))
    print("statuses seen per group (samples):", json.dumps(figures["statuses_seen"]))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lag_groups", description=__doc__)
    parser.add_argument("--window", type=float, default=30.0, help="PHASEFLOW_LAG_WINDOW_SECONDS")
    parser.add_argument("--interval", type=float, default=1.0, help="sample interval, seconds")
    parser.add_argument("--rate", type=float, default=20.0, help="records/s per producer")
    parser.add_argument("--print-every", type=float, default=5.0, help="seconds between tables")
    parser.add_argument("--tail", type=float, default=15.0, help="seconds run after the window")
    args = parser.parse_args(argv)
    # The monitor's own warnings (a group's status changed) are part of the record; aiokafka's
    # retries while the fresh broker elects its coordinators are not.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with _broker() as url:
        figures = asyncio.run(run(args, url))
    print(json.dumps(figures))
    missing = [key for key, value in figures.items() if key.endswith("_s") and value is None]
    if missing:
        print(f"not reached: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
