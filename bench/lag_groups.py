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
import json
import logging
import re
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic

from bench.lag_observers import (
    BURROW_POLL_EVERY,
    BurrowObservations,
    Timeline,
    burrow_summary,
    lag_once,
    poll_burrow,
    watch_lag,
)
from bench.services import BenchBroker, started_broker, worker_settings
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess, child_environment
from phaseflow.streams.monitoring.lag import LagMonitor
from phaseflow.streams.monitoring.lag_cli import format_table
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


#: Each change and what it should bring: (group, cause, status, Burrow's group status).
EXPECTED: Final = (
    ("stopped", "last commit", "STALL", "ERR"),
    ("stopped", "last commit", "STOP", "ERR"),
    ("slow", "half rate from", "WARN", "WARN"),
    ("rewound", "offsets reset to 0", "REWIND", "ERR"),
)
BURROW_CLUSTER: Final = "bench"


@dataclass
class Observers:
    """The three views of the same groups: the bench's own LagMonitor, `phaseflow lag --watch`
    and the worker's Burrow endpoint."""

    monitor: Timeline = field(default_factory=Timeline)
    watch: Timeline = field(default_factory=Timeline)
    burrow: BurrowObservations = field(default_factory=BurrowObservations)


def run_settings(args: argparse.Namespace, url: str, workdir: Path) -> Settings:
    """One set of settings for the monitor, the worker and the CLI: this run's prefix, its
    groups discovered by the include pattern, the bench's lag window and sample interval."""
    prefix = f"laggroups-{uuid.uuid4().hex[:6]}"
    return worker_settings(
        BenchBroker(url=url, kind="kafka"),
        workdir,
        topic_prefix=prefix,
        app_id=f"{prefix}-app",
        lag_window_seconds=args.window,
        lag_sample_interval_seconds=args.interval,
        lag_include=rf"{re.escape(prefix)}\..*",
        lag_burrow_cluster=BURROW_CLUSTER,
    )


async def _snapshot(
    env: dict[str, str],
    group: dict[str, str],
    run_state: Run,
    burrow: BurrowObservations,
    *,
    as_json: bool,
) -> None:
    """One `phaseflow lag` (or `--json`) verbatim, and the Burrow answers of that moment."""
    asked = run_state.now()
    answers = [
        burrow_summary(name, burrow.last_body[name]) for name in GROUPS if name in burrow.last_body
    ]
    output = await lag_once(env, group.values(), as_json=as_json)
    command = "phaseflow lag --json" if as_json else "phaseflow lag"
    print(
        f"\n=== t = {asked:5.1f} s: $ {command}   (done at {run_state.now():.1f} s; "
        f"other groups' lines left out)\n{output}\n"
        f"=== t = {asked:5.1f} s: GET /v3/kafka/{BURROW_CLUSTER}/consumer/{{group}}/lag\n"
        + "\n".join(answers),
        flush=True,
    )


def _cell(reached: float | None, cause: float | None) -> str:
    delay = _delay(reached, cause)
    return "-" if delay is None else f"{delay:.1f}"


def _timings(observers: Observers, causes: dict[str, float]) -> dict[str, float | None]:
    """Seconds from each cause to its status, per observer (None: not seen)."""
    figures: dict[str, float | None] = {}
    for name, _, status, burrow_group in EXPECTED:
        cause = causes.get(name)
        after = cause or 0.0
        key = f"{name}_{status.lower()}"
        figures[f"{key}_monitor_s"] = _delay(observers.monitor.first(name, status, after), cause)
        figures[f"{key}_lag_watch_s"] = _delay(observers.watch.first(name, status, after), cause)
        figures[f"{key}_burrow_s"] = _delay(
            observers.burrow.partitions.first(name, status, after), cause
        )
        figures[f"{key}_burrow_group_{burrow_group.lower()}_s"] = _delay(
            observers.burrow.groups.first(name, burrow_group, after), cause
        )
    return figures


def _print_timings(
    args: argparse.Namespace, observers: Observers, causes: dict[str, float]
) -> None:
    cells: list[tuple[str, ...]] = [
        (
            "GROUP",
            "CAUSE",
            "AT_S",
            "STATUS",
            "MONITOR_S",
            "LAG_WATCH_S",
            "BURROW_S",
            "BURROW_GROUP",
            "BURROW_GROUP_S",
        )
    ]
    for name, cause_text, status, burrow_group in EXPECTED:
        cause = causes.get(name)
        after = cause or 0.0
        cells.append(
            (
                name,
                cause_text,
                "-" if cause is None else f"{cause:.1f}",
                status,
                _cell(observers.monitor.first(name, status, after), cause),
                _cell(observers.watch.first(name, status, after), cause),
                _cell(observers.burrow.partitions.first(name, status, after), cause),
                burrow_group,
                _cell(observers.burrow.groups.first(name, burrow_group, after), cause),
            )
        )
    seen = (
        observers.monitor.seen("transactional"),
        observers.watch.seen("transactional"),
        observers.burrow.partitions.seen("transactional"),
        observers.burrow.groups.seen("transactional"),
    )
    cells.append(
        (
            "transactional",
            "keeps up (exactly_once)",
            "-",
            "statuses seen",
            *["/".join(sorted(s)) for s in seen[:3]],
            "seen",
            "/".join(sorted(seen[3])),
        )
    )
    print(
        f"\ntimings, seconds from the cause to the first observation of the status "
        f"(window {args.window:g} s, sample interval {args.interval:g} s; MONITOR: in-process "
        f"LagMonitor, LAG_WATCH: `phaseflow lag --watch`, BURROW: the worker's "
        f"/v3/kafka/{BURROW_CLUSTER}/consumer/{{group}}/lag partition status and group status, "
        f"polled every {BURROW_POLL_EVERY:g} s):"
    )
    print("\n".join(line.rstrip() for line in aligned_rows(cells)))
    flat = observers.burrow.steps_without_growth("slow", causes.get("slow", 0.0))
    read = observers.burrow.sample_count("slow", causes.get("slow", 0.0))
    print(
        f"slow, of the worker's {read} samples read after the slowdown, those whose lag did "
        f"not grow ({len(flat)}; "
        f"each breaks the trend WARN for one window): {'; '.join(flat) or 'none'}"
    )
    for label, timeline in (
        ("in-process monitor", observers.monitor),
        ("phaseflow lag --watch", observers.watch),
        ("Burrow partition", observers.burrow.partitions),
        ("Burrow group", observers.burrow.groups),
    ):
        counts = {name: timeline.seen(name) for name in GROUPS}
        print(f"statuses seen, {label} (observations): {json.dumps(counts)}")


def _start_clients(
    settings: Settings, group: dict[str, str], run_state: Run, stop: asyncio.Event, *, rate: float
) -> list[asyncio.Task[None]]:
    """The two producers and the four groups' consumers, until ``stop``."""
    prefix = settings.topic_prefix
    events, tx_events = f"{prefix}.events", f"{prefix}.tx-events"
    tasks = [
        asyncio.create_task(_produce(settings, events, rate, stop)),
        asyncio.create_task(_produce_transactions(settings, tx_events, rate, stop)),
    ]
    for name in GROUPS:
        topic = tx_events if name == "transactional" else events
        tasks.append(
            asyncio.create_task(
                _consume(settings, group[name], topic, run_state, stop, rate=rate, name=name)
            )
        )
    return tasks


async def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    prefix = settings.topic_prefix
    events, tx_events = f"{prefix}.events", f"{prefix}.tx-events"
    group = {name: f"{prefix}.{name}" for name in GROUPS}
    ours = list(group.values())
    duration = CHANGE_AT + args.window + args.tail
    await _create_topics(settings, [events, tx_events])
    env = child_environment(settings)
    stop = asyncio.Event()
    run_state = Run()
    observers = Observers()
    tasks = _start_clients(settings, group, run_state, stop, rate=args.rate)
    base_url = f"http://127.0.0.1:{settings.web_port}"
    tasks.append(
        asyncio.create_task(
            poll_burrow(
                base_url, BURROW_CLUSTER, group, run_state.now, stop=stop, seen=observers.burrow
            )
        )
    )
    watcher = asyncio.create_task(
        watch_lag(env, args.interval, group, run_state.now, observers.watch)
    )
    tasks.append(watcher)
    # Single `phaseflow lag` runs: after the rewind (and the stopped group's STALL), after
    # STOP and WARN are due, and at the end (there also --json).
    checkpoints = sorted({REWIND_AT + 5.0, CHANGE_AT + args.window + 5.0})
    last_print = -args.print_every
    monitor = LagMonitor(settings, interval=args.interval)
    await monitor.start(background=False)
    try:
        while run_state.now() < duration:
            rows = await monitor.sample_once()
            at = run_state.now()
            for name in GROUPS:
                observers.monitor.add(name, at, str(monitor.group_status(group[name])))
            if at - last_print >= args.print_every:
                last_print = at
                # Only the run's groups: the worker's own groups are watched too.
                mine = [row for row in rows if row.group in ours]
                print(f"\n--- t = {at:5.1f} s (in-process monitor)")
                print(format_table(mine, ours), flush=True)
            if checkpoints and at >= checkpoints[0]:
                checkpoints.pop(0)
                tasks.append(
                    asyncio.create_task(
                        _snapshot(env, group, run_state, observers.burrow, as_json=False)
                    )
                )
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise RuntimeError("a task of the run failed") from task.exception()
            await asyncio.sleep(max(0.0, args.interval - (run_state.now() - at)))
        await _snapshot(env, group, run_state, observers.burrow, as_json=False)
        await _snapshot(env, group, run_state, observers.burrow, as_json=True)
        stopped = observers.burrow.last_body.get("stopped")
        print(f"\n=== GET /v3/kafka/{BURROW_CLUSTER}/consumer/{group['stopped']}/lag (last answer)")
        print(json.dumps(stopped, indent=2))
    finally:
        stop.set()
        watcher.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await monitor.stop()

    causes = run_state.events
    figures: dict[str, Any] = {
        "window_s": args.window,
        "interval_s": args.interval,
        "rate_per_s": args.rate,
        **_timings(observers, causes),
        "statuses_seen": {name: observers.monitor.seen(name) for name in GROUPS},
        "burrow_statuses_seen": {name: observers.burrow.partitions.seen(name) for name in GROUPS},
    }
    _print_timings(args, observers, causes)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lag_groups", description=__doc__)
    parser.add_argument("--window", type=float, default=30.0, help="PHASEFLOW_LAG_WINDOW_SECONDS")
    # 2 s, longer than a round takes in a loaded worker and than the consumers' 0.5 s commit
    # interval (production: 5 s vs Faust's 2.8 s). At 1 s the loaded worker's rounds overran and
    # its samples came in pairs 0.1-0.5 s apart; the slow group's lag then often did not grow
    # between the two, and each such step kept the trend WARN away for a whole window.
    parser.add_argument("--interval", type=float, default=2.0, help="sample interval, seconds")
    parser.add_argument("--rate", type=float, default=20.0, help="records/s per producer")
    parser.add_argument("--print-every", type=float, default=5.0, help="seconds between tables")
    parser.add_argument("--tail", type=float, default=15.0, help="seconds run after the window")
    args = parser.parse_args(argv)
    # The monitor's own warnings (a group's status changed) are part of the record; aiokafka's
    # retries while the fresh broker elects its coordinators are not.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with started_broker("kafka") as (url, _), tempfile.TemporaryDirectory() as workdir:
        settings = run_settings(args, url, Path(workdir))
        asyncio.run(ensure_topics(settings))
        # A real worker serves the Burrow endpoint from its own lag monitor.
        with WorkerProcess(settings, Path(workdir) / "worker.log") as worker:
            ready = worker.wait_ready(180.0)
            print(f"worker ready after {ready:.1f} s (pid {worker.pid})", flush=True)
            try:
                figures = asyncio.run(run(args, settings))
            except BaseException:
                print(f"worker log (last lines):\n{worker.tail()}", file=sys.stderr)
                raise
    print(json.dumps(figures))
    missing = [key for key, value in figures.items() if key.endswith("_s") and value is None]
    if missing:
        print(f"not reached: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
