"""Under ``exactly_once`` a transaction commits a partition's offsets only with that partition's
table writes in it.

faust-streaming 0.15 sends a table write (a changelog record) through the producer *buffer*: the
record reaches the partition's transactional producer some time after the write, from a
background task. Committing offsets does not wait for that buffer under transactions (at least
once it flushes the producer first). On a loaded worker a commit often lands between the two: the
transaction commits the consumed offsets and the triggers sent while handling them, and the
table writes of the same records go into the next transaction. A worker killed before that one
commits leaves a committed offset and trigger whose table state exists nowhere: the worker that
takes the partition over restores the changelog without it and never reads those records again.
The readiness agent then holds the next phase by phase order forever (the predecessor's trigger
is missing from its state) or, with the trigger ledger lost, could fire a phase twice
(robinhood/faust#340 is the same loss for a counter).

``commit_after_table_writes`` makes the commit wait until every table write sent on the
partitions it commits has been acknowledged by the broker, which puts it inside the transaction
being committed (or an earlier one).

A commit can also fall *inside* the handling of one record, between its table writes and the
trigger it sends: the state saying "fired" (and the record's dedup id) then commits without the
trigger, and after a crash the record, handled again, is dropped as a duplicate: the trigger is
lost for good. An agent whose outputs must commit together wraps each record (or each batch of
records, the readiness agent) in ``one_transaction``: a commit waits for the record in progress,
and the record ends only once its table writes are stored, so a transaction holds whole records.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from faust.tables import base as faust_tables
from faust.transport import consumer as faust_consumer

_INSTALLED = "__phaseflow_commit_after_table_writes__"
#: How often a commit waiting for table writes checks that the producer buffer still sends.
_SENDER_CHECK_SECONDS = 1.0


class TableWriteFailedError(RuntimeError):
    """A table write the commit waited for was not stored: its offsets must not commit."""


class PendingTableWrites:
    """Table writes (changelog records) sent but not yet acknowledged, by partition."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Future[Any]] = set()

    def add(self, sent: asyncio.Future[Any]) -> None:
        if sent.done():
            return
        self._pending.add(sent)
        sent.add_done_callback(self._pending.discard)

    def __len__(self) -> int:
        return len(self._pending)

    async def settled(self, partitions: Iterable[int], *, sending: Callable[[], bool]) -> None:
        """Wait for the writes on ``partitions`` (and any without a partition yet); raise if
        one of them failed, or if ``sending`` says nothing will send them any more."""
        wanted = {*partitions, None}
        waiting = [sent for sent in self._pending if _partition_of(sent) in wanted]
        left: set[asyncio.Future[Any]] = set(waiting)
        while left:
            _, left = await asyncio.wait(left, timeout=_SENDER_CHECK_SECONDS)
            if left and not sending():
                raise TableWriteFailedError(
                    f"{len(left)} table write(s) never sent: the producer buffer stopped; "
                    f"not committing the offsets they belong to"
                )
        for sent in waiting:
            if sent.cancelled() or sent.exception() is not None:
                topic = _topic_of(sent)
                error = "cancelled" if sent.cancelled() else repr(sent.exception())
                raise TableWriteFailedError(
                    f"table write to {topic} partition {_partition_of(sent)} failed ({error}); "
                    f"not committing the offsets it belongs to"
                )


_writes: weakref.WeakKeyDictionary[Any, PendingTableWrites] = weakref.WeakKeyDictionary()


def pending_table_writes(app: Any) -> PendingTableWrites:
    """The table writes of ``app`` (a Faust app) not acknowledged yet."""
    writes = _writes.get(app)
    if writes is None:
        writes = _writes[app] = PendingTableWrites()
    return writes


async def table_writes_sent(app: Any, partitions: int | Iterable[int]) -> None:
    """Under exactly_once: wait until the table writes made so far on ``partitions`` are stored
    (the end of a record, or a batch of records, in ``one_transaction``)."""
    if not app.in_transaction:
        return
    wanted = (partitions,) if isinstance(partitions, int) else tuple(partitions)
    buffer = app.producer.buffer
    await pending_table_writes(app).settled(wanted, sending=lambda: buffer.state == "running")


_records: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()
#: Per app: who holds the record lock now ("record(s) on partitions [2]", "commit of partitions
#: [0, 2]") and since when (monotonic): for the watchdog's report of a stuck worker.
_holders: weakref.WeakKeyDictionary[Any, tuple[str, float]] = weakref.WeakKeyDictionary()


def lock_holder(app: Any) -> str:
    """What holds ``app``'s record lock and for how long, or "nobody" (diagnostics)."""
    held = _holders.get(app)
    if held is None:
        return "nobody"
    what, since = held
    return f"{what} for {time.monotonic() - since:.1f} s"


@asynccontextmanager
async def _holding(app: Any, what: str) -> AsyncIterator[None]:
    async with _record_lock(app):
        _holders[app] = (what, time.monotonic())
        try:
            yield
        finally:
            _holders.pop(app, None)


def _record_lock(app: Any) -> asyncio.Lock:
    lock = _records.get(app)
    if lock is None:
        lock = _records[app] = asyncio.Lock()
    return lock


@asynccontextmanager
async def one_transaction(app: Any, partitions: int | Iterable[int]) -> AsyncIterator[None]:
    """Handle one record (or one batch of records) of ``partitions`` so that no commit splits
    its table writes from its outputs (exactly_once; a no-op lock otherwise)."""
    numbers = [partitions] if isinstance(partitions, int) else sorted(set(partitions))
    async with _holding(app, f"record(s) on partitions {numbers}"):
        yield
        await table_writes_sent(app, numbers)


def _partition_of(sent: asyncio.Future[Any]) -> int | None:
    message = getattr(sent, "message", None)
    partition = getattr(message, "partition", None)
    return partition if isinstance(partition, int) else None


def _topic_of(sent: asyncio.Future[Any]) -> str:
    channel = getattr(getattr(sent, "message", None), "channel", None)
    name = getattr(channel, "get_topic_name", None)
    return str(name()) if callable(name) else "a changelog topic"


def commit_after_table_writes() -> None:
    """Make exactly_once commits wait for the table writes of their partitions (idempotent)."""
    collection: Any = faust_tables.Collection
    manager: Any = faust_consumer.TransactionManager
    if getattr(manager, _INSTALLED, False):
        return
    send_changelog = collection.send_changelog
    commit = manager.commit

    def send_changelog_tracked(self: Any, *args: Any, **kwargs: Any) -> Any:
        sent = send_changelog(self, *args, **kwargs)
        # Tracked whatever the guarantee: only an exactly_once commit waits for them, and the
        # set holds a write only until it is acknowledged.
        pending_table_writes(self.app).add(sent)
        return sent

    async def commit_with_table_writes(
        self: Any, offsets: Mapping[Any, int], *, start_new_transaction: bool = True
    ) -> bool:
        buffer = self.app.producer.buffer
        partitions = sorted({tp.partition for tp in offsets})
        # Never in the middle of a record (one_transaction).
        async with _holding(self.app, f"commit of partitions {partitions}"):
            await pending_table_writes(self.app).settled(
                (tp.partition for tp in offsets), sending=lambda: buffer.state == "running"
            )
            return bool(await commit(self, offsets, start_new_transaction=start_new_transaction))

    collection.send_changelog = send_changelog_tracked
    manager.commit = commit_with_table_writes
    setattr(manager, _INSTALLED, True)
