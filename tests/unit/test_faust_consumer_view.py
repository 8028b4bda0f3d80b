"""The watchdog's report of a stuck partition (streams/faust_consumer_view.py) and the record
lock holder it names (streams/core/faust_table_writes.py)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from phaseflow.streams.core.faust_table_writes import lock_holder, one_transaction
from phaseflow.streams.faust_consumer_view import describe_partition

TOPIC = "pf.phase-completions"


class FakeApp:
    in_transaction = False  # one_transaction then waits for no table write
    in_recovery = False

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer


def faust_consumer(**overrides: Any) -> SimpleNamespace:
    read: defaultdict[TP, int | None] = defaultdict(lambda: None)
    read[TP(TOPIC, 2)] = 67
    values: dict[str, Any] = {
        "assignment": lambda: {TP(TOPIC, 0), TP(TOPIC, 2)},
        "_active_partitions": {TP(TOPIC, 0)},
        "_paused_partitions": {TP(TOPIC, 2)},
        "_buffered_partitions": set(),
        "_read_offset": read,
        "_committed_offset": {TP(TOPIC, 2): 67},
        "flow_active": True,
    }
    return SimpleNamespace(**(values | overrides))


def test_the_report_names_where_faust_holds_the_partition() -> None:
    line = describe_partition(FakeApp(faust_consumer()), TOPIC, 2)
    assert line.startswith(f"{TOPIC}[2]; assigned=True; faust active=False; paused=True;")
    assert "read_offset=67; committed=67" in line
    assert "aiokafka consumer not started" in line
    assert "record lock held by nobody" in line


def test_an_unreadable_consumer_still_gives_a_report() -> None:
    line = describe_partition(FakeApp(object()), TOPIC, 2)
    assert "consumer state unreadable" in line
    assert "record lock held by nobody" in line


async def test_the_lock_holder_is_the_record_in_progress() -> None:
    app = FakeApp(faust_consumer())
    async with one_transaction(app, 3):
        await asyncio.sleep(0)
        assert lock_holder(app).startswith("record(s) on partitions [3] for ")
    assert lock_holder(app) == "nobody"
