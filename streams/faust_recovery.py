"""Table recovery under ``exactly_once`` must ask the broker where each changelog ends.

faust-streaming 0.15 takes a changelog partition's highwater, under transactions, from
``AIOKafkaConsumer.last_stable_offset(tp)``: the last stable offset seen in a *fetch response*
of that partition. Right after a worker (re)starts nothing has been fetched yet, aiokafka answers
None, Faust reads that as "the changelog is empty" and starts with empty tables, and every
table-backed decision made before the restart is forgotten (robinhood/faust#658). The chaos
suite hit it: a worker killed mid-batch and restarted at once recovered no prediction batch and
no readiness state (its recovery log printed highwater -1 for changelogs holding records).

``end_offsets`` sends a ListOffsets request with the consumer's isolation level, which is
``read_committed`` under transactions: the broker's last stable offset, known at any time.

And it must see where a changelog ends soon, without skipping a record: see
``use_quick_aborted_tx_detection`` (the recovery's wait, and the position it asks for).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, cast

from faust.tables import recovery as faust_tables_recovery
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)


async def _highwaters_from_the_broker(self: Any, partitions: Iterable[Any]) -> Mapping[Any, int]:
    consumer = self._ensure_consumer()
    return cast(Mapping[Any, int], await consumer.end_offsets(list(partitions)))


def use_broker_highwaters_for_recovery() -> None:
    """Make Faust's consumer thread ask the broker for changelog highwaters (idempotent)."""
    thread_class: Any = faust_aiokafka.AIOKafkaConsumerThread
    thread_class._highwaters = _highwaters_from_the_broker


#: Faust's recovery loop waits this long for a changelog record (faust-streaming: 5 s).
QUICK_RECOVERY_WAIT_SECONDS = 0.1
#: Longest time a partition's position is held back for records not yet delivered (a bound on
#: anything unforeseen keeping them undelivered: recovery then ends as it would have before).
UNDELIVERED_HOLD_SECONDS = 5.0

_RETURNED = "_phaseflow_returned"
_UNDELIVERED_SINCE = "_phaseflow_undelivered_since"


class _RecoveryAsyncio:
    """``asyncio`` as faust.tables.recovery sees it, with a shorter ``wait_for``.

    Under transactions every changelog ends with a commit marker, which a read_committed
    consumer never delivers: the last record Faust reads is one short of the highwater, and its
    recovery only notices that the consumer's position is past it ("Aborted tx until
    highwater") after two consecutive empty waits of its changelog queue, 2 x 5 s. That was 10 of
    the 13 s a worker restarted after kill -9 spent before processing (chaos suite), and with
    0.5 s waits still ~1 s of every restart. The only ``wait_for`` in that module is that wait.
    Two empty waits of 0.1 s are safe because the position recovery then asks for counts only
    records its loop has taken (``position_of_delivered_records``).
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    def wait_for(awaitable: Awaitable[Any], timeout: float | None) -> Awaitable[Any]:
        if timeout is not None:
            timeout = min(timeout, QUICK_RECOVERY_WAIT_SECONDS)
        return asyncio.wait_for(awaitable, timeout)


def _returned(faust_consumer: Any) -> dict[Any, int]:
    """tp -> the last offset the consumer thread returned (kept on Faust's consumer)."""
    returned: dict[Any, int] = faust_consumer.__dict__.setdefault(_RETURNED, {})
    return returned


def _record_returned(fetch_records: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Faust's fetch in its consumer thread, noting the last offset it returned per partition.

    It runs in the same thread (and loop) as every position request, right after aiokafka moved
    the positions past the records, with no await in between: a position read later always
    finds the records that moved it noted here."""

    async def fetch_records_noted(self: Any, *args: Any, **kwargs: Any) -> Any:
        records = await fetch_records(self, *args, **kwargs)
        if records:
            returned = _returned(self.consumer)
            for tp, batch in records.items():
                if batch:
                    returned[tp] = batch[-1].offset
        return records

    fetch_records_noted.__wrapped__ = fetch_records  # type: ignore[attr-defined]
    return fetch_records_noted


def _queued_for_recovery(faust_consumer: Any, tp: Any) -> bool:
    """Whether a record of ``tp`` sits in the tables' changelog queue: delivered by Faust, not
    yet taken by its recovery loop."""
    tables = getattr(getattr(faust_consumer, "app", None), "tables", None)
    queue = getattr(tables, "_changelog_queue", None)  # not the property: it would create one
    waiting = getattr(queue, "_queue", None) or ()
    return any(getattr(getattr(event, "message", None), "tp", None) == tp for event in waiting)


def _position_of_delivered_records(
    position: Callable[..., Awaitable[int | None]],
    clock: Callable[[], float] = time.monotonic,
    queued: Callable[[Any, Any], bool] = _queued_for_recovery,
) -> Callable[..., Any]:
    """Faust's ``Consumer.position`` (asked only by table recovery), held at the last record
    fetched but not yet applied.

    Recovery takes "no record for two waits and the position past the highwater" for "only
    commit markers are left" and then skips every record below the highwater, so the position
    it is told must not count a record it has not taken yet. Two places hold such records:

    - fetched, not delivered: aiokafka's position moves past a batch when the consumer thread
      returns it, before Faust's drain loop hands its records to the recovery queue one by one,
      with awaits in between. Faust's read offset of a partition is the last record it
      delivered; while the last record returned is ahead of it, records are on their way.
    - delivered, not taken: a record put on the recovery queue in the same loop turn as the
      recovery's wait timed out stays queued (the cancelled ``get`` leaves it there) while
      recovery decides. A fresh-clone chaos run lost a prediction batch that way (at 0.1 s
      waits; the same race exists at Faust's 5 s, rarer).

    While either holds, the position is the last returned record's offset, below the highwater
    (at most ``UNDELIVERED_HOLD_SECONDS`` in a row: a bound on anything unforeseen)."""

    async def position_of_delivered_records(self: Any, tp: Any) -> int | None:
        found = await position(self, tp)
        last = _returned(self).get(tp)
        # tp -> (the last returned offset it was held for, since when): a hold that ran out is
        # not taken again for the same records, but is for records returned after them.
        since: dict[Any, tuple[int, float]] = self.__dict__.setdefault(_UNDELIVERED_SINCE, {})
        if found is None or last is None:
            since.pop(tp, None)
            return found
        delivered = self._read_offset.get(tp)
        on_the_way = delivered is None or delivered < last
        waiting = not on_the_way and queued(self, tp)
        if not on_the_way and not waiting:
            since.pop(tp, None)
            return found
        held = since.get(tp)
        if held is None or held[0] != last:
            held = since[tp] = (last, clock())
            log.info(
                "table recovery: %s is at %s but records up to %s are not applied yet (%s); "
                "holding its end until they are",
                tp,
                found,
                last,
                "in the recovery queue" if waiting else "fetched, not yet delivered",
            )
        if clock() - held[1] > UNDELIVERED_HOLD_SECONDS:
            return found
        return min(found, last)

    position_of_delivered_records.__wrapped__ = position  # type: ignore[attr-defined]
    return position_of_delivered_records


def use_quick_aborted_tx_detection() -> None:
    """Make Faust's recovery see the end of a transactional changelog in ~0.2 s, counting only
    records its loop has taken (idempotent)."""
    recovery_module: Any = faust_tables_recovery
    recovery_module.asyncio = _RecoveryAsyncio()
    thread_class: Any = faust_aiokafka.AIOKafkaConsumerThread
    if not hasattr(thread_class._fetch_records, "__wrapped__"):
        thread_class._fetch_records = _record_returned(thread_class._fetch_records)
    consumer_class: Any = faust_consumer.ThreadDelegateConsumer
    if not hasattr(consumer_class.position, "__wrapped__"):
        consumer_class.position = _position_of_delivered_records(consumer_class.position)
