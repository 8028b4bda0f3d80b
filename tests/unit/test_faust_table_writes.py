"""An exactly_once commit waits for the table writes of its partitions
(streams/core/faust_table_writes.py).

Stock faust-streaming commits a transaction while table writes made for the records it commits
can still sit in the producer buffer; they then land in the next transaction and a kill -9 in
between loses them (the two-workers kill test: the survivor restored readiness state without
the predecessor's trigger and never fired the next phase). These tests drive Faust's own
``TransactionManager.commit`` and ``Table.send_changelog`` with the broker replaced by fakes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from faust.transport import consumer as faust_consumer
from faust.types import TP

from phaseflow.streams.app import build_app
from phaseflow.streams.core.faust_table_writes import (
    TableWriteFailedError,
    one_transaction,
    pending_table_writes,
    table_writes_sent,
)
from phaseflow.streams.core.settings import Settings

COMPLETIONS = "pf.phase-completions"


class FakeBuffer:
    def __init__(self) -> None:
        self.state = "running"


class FakeProducer:
    def __init__(self) -> None:
        self.buffer = FakeBuffer()


class FakeAssignor:
    def group_for_topic(self, _topic: str) -> int:
        return 1


class FakeConf:
    id = "pf-app"


class FakeApp:
    in_transaction = True

    def __init__(self) -> None:
        self.conf = FakeConf()
        self.assignor = FakeAssignor()
        self.producer = FakeProducer()


class FakeTransactionalProducers:
    """What Faust's aiokafka driver does on commit: one transaction per transactional id."""

    def __init__(self) -> None:
        self.committed: list[dict[str, dict[TP, int]]] = []

    async def commit_transactions(
        self, by_transactional_id: Any, _group_id: str, *, start_new_transaction: bool
    ) -> None:
        del start_new_transaction
        self.committed.append({tid: dict(offsets) for tid, offsets in by_transactional_id.items()})


class Manager:
    """Stands in for Faust's TransactionManager (the attributes its commit reads)."""

    def __init__(self) -> None:
        self.app = FakeApp()
        self.producer = FakeTransactionalProducers()


class Message:
    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.channel = None


def table_write(partition: int) -> asyncio.Future[Any]:
    """A changelog record as Faust's buffer holds it: resolved once the broker has it."""
    sent: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    sent.message = Message(partition)  # type: ignore[attr-defined]
    return sent


@pytest.fixture
def manager(tmp_path: Path) -> Manager:
    # Building the app installs the patch on Faust's classes, as the worker does.
    build_app(Settings(topic_prefix="pf", data_dir=tmp_path, processing_guarantee="exactly_once"))
    return Manager()


async def commit(manager: Manager, offsets: dict[TP, int]) -> bool:
    return bool(await faust_consumer.TransactionManager.commit(manager, offsets))  # type: ignore[arg-type]


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_offsets_commit_only_after_the_table_writes_of_their_partition(
    manager: Manager,
) -> None:
    write = table_write(2)
    pending_table_writes(manager.app).add(write)
    committing = asyncio.ensure_future(commit(manager, {TP(COMPLETIONS, 2): 81}))
    await settle()
    # Stock Faust has committed by now: offset 81 and the triggers, without the state.
    assert manager.producer.committed == []
    write.set_result("acknowledged")
    assert await committing
    assert manager.producer.committed == [{"pf-app-1-2": {TP(COMPLETIONS, 2): 81}}]
    assert len(pending_table_writes(manager.app)) == 0


async def test_a_write_on_another_partition_does_not_hold_a_commit(manager: Manager) -> None:
    elsewhere = table_write(3)
    pending_table_writes(manager.app).add(elsewhere)
    assert await commit(manager, {TP(COMPLETIONS, 0): 12})
    assert manager.producer.committed == [{"pf-app-1-0": {TP(COMPLETIONS, 0): 12}}]
    assert not elsewhere.done()


async def test_a_failed_table_write_keeps_its_offsets_uncommitted(manager: Manager) -> None:
    write = table_write(1)
    pending_table_writes(manager.app).add(write)
    committing = asyncio.ensure_future(commit(manager, {TP(COMPLETIONS, 1): 7}))
    await settle()
    write.set_exception(ConnectionError("broker went away"))
    with pytest.raises(TableWriteFailedError, match="partition 1 failed"):
        await committing
    assert manager.producer.committed == []


async def test_writes_nobody_will_send_any_more_fail_the_commit(manager: Manager) -> None:
    pending_table_writes(manager.app).add(table_write(0))
    manager.app.producer.buffer.state = "crashed"
    with pytest.raises(TableWriteFailedError, match="producer buffer stopped"):
        await commit(manager, {TP(COMPLETIONS, 0): 3})
    assert manager.producer.committed == []


async def test_faust_table_writes_are_tracked_until_acknowledged(tmp_path: Path) -> None:
    ctx = build_app(
        Settings(topic_prefix="pf", data_dir=tmp_path, processing_guarantee="exactly_once")
    )
    table = ctx.app.tables["readiness"]
    # What a readiness state write does in stream context (partition of the consumed record).
    sent = table.send_changelog(2, b'"2026-02-03:3"', b"{}")
    writes = pending_table_writes(ctx.app)
    assert len(writes) == 1
    sent.set_result("acknowledged")
    await settle()
    assert len(writes) == 0


async def test_a_trigger_goes_out_only_after_the_table_writes_before_it() -> None:
    # A trigger sent while a commit is under way joins that transaction even though the
    # record it came from is not in the commit: without its ledger entry a crash would make
    # the survivor handle the record again and fire the trigger twice.
    app = FakeApp()
    ledger = table_write(2)
    pending_table_writes(app).add(ledger)
    sending = asyncio.ensure_future(table_writes_sent(app, 2))
    await settle()
    assert not sending.done()
    ledger.set_result("acknowledged")
    await sending


async def test_a_trigger_does_not_wait_for_other_partitions_or_at_least_once() -> None:
    app = FakeApp()
    pending_table_writes(app).add(table_write(1))
    await table_writes_sent(app, 2)
    app.in_transaction = False
    await table_writes_sent(app, 1)


async def test_no_commit_falls_between_a_records_state_and_its_trigger(manager: Manager) -> None:
    # The record wrote its state (ledger: fired) and has not sent its trigger yet. A commit now
    # would store "fired" without the trigger; after a crash the record is a duplicate and the
    # trigger is never sent.
    record_started = asyncio.Event()
    send_trigger = asyncio.Event()
    ledger = table_write(0)

    async def handle_record() -> None:
        async with one_transaction(manager.app, 0):
            pending_table_writes(manager.app).add(ledger)
            record_started.set()
            await send_trigger.wait()
        # one_transaction returned: the ledger write is stored, the record is whole

    handling = asyncio.ensure_future(handle_record())
    await record_started.wait()
    ledger.set_result("acknowledged")  # the state is on the broker, in the open transaction
    committing = asyncio.ensure_future(commit(manager, {TP(COMPLETIONS, 0): 4}))
    await settle()
    # Without one_transaction the commit goes through here: "fired" without the trigger.
    assert manager.producer.committed == []
    send_trigger.set()
    await handling
    assert await committing
    assert manager.producer.committed == [{"pf-app-1-0": {TP(COMPLETIONS, 0): 4}}]
