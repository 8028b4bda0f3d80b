"""CPU per event of the readiness path, in process: no broker, no Faust, deterministic input.

The same 40,000-event backlog as ``bench.readiness`` (``backlog()``: whole game days, 10 %
retried publishes) goes through a ``ReadinessProcessor`` three ways, each best of 5 runs of
process CPU time:

- ``dict``: a plain dict as its table, a publisher that collects what is sent;
- ``write-back``: the table and the durations behind ``WriteBackTable``s flushed every 500
  events, as the readiness agent's batches do (``phaseflow.agents.readiness_agent``);
- ``tick scan``: one ``due_ticks()`` over the states the backlog leaves (what the deadline timer
  does every second), in ms of CPU per scan.

Every run must fire the same triggers and send the same records (checked, so a faster path
that changed the outputs fails loudly); the input and the clock are fixed, so the digest printed
is comparable between versions of the code. Run: ``python -m bench.readiness_cpu [--events N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import sys
import time
from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from bench.readiness import backlog
from phaseflow.agents.readiness import ReadinessProcessor
from phaseflow.agents.write_back import WriteBackTable
from phaseflow.streams.core.clock import ManualClock
from phaseflow.streams.core.envelope import Origin
from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName

RUNS = 5
BATCH = 500


class _Collected:
    """A publisher that keeps what the processor sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[TopicName, str, bytes]] = []

    async def send(self, topic: TopicName, key: str, value: bytes) -> None:
        self.sent.append((topic, key, value))


def _processor(
    table: MutableMapping[str, Any],
    durations: MutableMapping[str, Any],
    publisher: _Collected,
    clock: ManualClock,
) -> ReadinessProcessor:
    return ReadinessProcessor(
        registry=load_registry(None),
        table=table,
        durations=durations,
        publisher=publisher,
        clock=clock,
        pipeline_timezone=Settings.model_fields["pipeline_timezone"].default,
        max_message_bytes=Settings.model_fields["max_message_bytes"].default,
    )


#: The clock of every run, and the timestamp of every completion a second before it.
NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def _deterministic(records: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The backlog with its random run ids and wall-clock timestamps replaced by fixed ones (a
    retried publish keeps its run's id), so that every version of the code gets the same input
    and the digest of what it sent can be compared from one version to the next."""
    ids: dict[str, str] = {}
    stamp = (NOW - timedelta(seconds=1)).isoformat()
    fixed = []
    for key, value in records:
        event = orjson.loads(value)
        event["execution_id"] = ids.setdefault(event["execution_id"], f"exec-{len(ids):06d}")
        event["timestamp"] = stamp
        fixed.append((key, orjson.dumps(event)))
    return fixed


def _digest(sent: list[tuple[TopicName, str, bytes]], *tables: MutableMapping[str, Any]) -> str:
    """What was sent, in order, and what the tables hold (the input and the clock are fixed:
    equal digests, equal outputs and states)."""
    hashed = hashlib.sha256()
    for topic, key, value in sent:
        hashed.update(f"{topic}\0{key}\0".encode() + value + b"\n")
    for table in tables:
        for key in sorted(table):
            stored = table[key]
            hashed.update(
                key.encode()
                + b"\0"
                + (stored if isinstance(stored, bytes) else orjson.dumps(stored))
                + b"\n"
            )
    return hashed.hexdigest()[:16]


async def _feed(
    processor: ReadinessProcessor,
    records: list[tuple[bytes, bytes]],
    batch_tables: tuple[WriteBackTable, ...] = (),
) -> int:
    triggers = 0
    for offset, (key, value) in enumerate(records):
        origin = Origin(topic="bench", partition=0, offset=offset, key=key)
        triggers += len(await processor.handle(value, origin))
        if batch_tables and (offset + 1) % BATCH == 0:
            for table in batch_tables:
                table.flush()
    for table in batch_tables:
        table.flush()
    return triggers


def _one_run(
    records: list[tuple[bytes, bytes]], *, write_back: bool
) -> tuple[float, int, str, ReadinessProcessor]:
    """CPU seconds for the backlog; triggers fired; digest of everything sent and stored."""
    table: dict[str, Any] = {}
    durations: dict[str, Any] = {}
    publisher = _Collected()
    clock = ManualClock(NOW)
    batch_tables: tuple[WriteBackTable, ...] = ()
    if write_back:
        batch_tables = (WriteBackTable(table), WriteBackTable(durations))
        processor = _processor(batch_tables[0], batch_tables[1], publisher, clock)
    else:
        processor = _processor(table, durations, publisher, clock)
    gc.collect()
    started = time.process_time()
    triggers = asyncio.run(_feed(processor, records, batch_tables))
    spent = time.process_time() - started
    return spent, triggers, _digest(publisher.sent, table, durations), processor


def _tick_scan(processor: ReadinessProcessor) -> tuple[float, int]:
    """CPU seconds of one timer scan over every held state; ticks it asked for."""
    best = float("inf")
    count = 0
    for _ in range(RUNS):
        started = time.process_time()
        count = len(processor.due_ticks())
        best = min(best, time.process_time() - started)
    return best, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.readiness_cpu")
    parser.add_argument("--events", type=int, default=40_000)
    args = parser.parse_args(argv)
    records = _deterministic(backlog(args.events))
    print(f"readiness CPU per event, {len(records):,} events, best of {RUNS} (process CPU time)")
    for name, write_back in (("dict", False), (f"write-back, batches of {BATCH}", True)):
        results = [_one_run(records, write_back=write_back) for _ in range(RUNS)]
        outputs = {(triggers, digest) for _, triggers, digest, _ in results}
        if len(outputs) != 1:
            print(f"error: runs of {name} sent different records: {outputs}", file=sys.stderr)
            return 1
        (triggers, digest), best = outputs.pop(), min(spent for spent, *_ in results)
        print(
            f"  {name:<26} {best / len(records) * 1e6:7.1f} µs/event "
            f"({triggers:,} triggers, outputs {digest})"
        )
    processor = results[-1][3]
    scan, ticks = _tick_scan(processor)
    held = sum(1 for _ in processor.states())
    print(f"  {'tick scan':<26} {scan * 1e3:7.1f} ms/scan ({held:,} states, {ticks:,} ticks due)")
    if triggers == 0:
        print("error: the backlog fired no trigger", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
