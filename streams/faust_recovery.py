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
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, cast

from faust.tables import recovery as faust_tables_recovery
from faust.transport.drivers import aiokafka as faust_aiokafka


async def _highwaters_from_the_broker(self: Any, partitions: Iterable[Any]) -> Mapping[Any, int]:
    consumer = self._ensure_consumer()
    return cast(Mapping[Any, int], await consumer.end_offsets(list(partitions)))


def use_broker_highwaters_for_recovery() -> None:
    """Make Faust's consumer thread ask the broker for changelog highwaters (idempotent)."""
    thread_class: Any = faust_aiokafka.AIOKafkaConsumerThread
    thread_class._highwaters = _highwaters_from_the_broker


#: Faust's recovery loop waits this long for a changelog record (faust-streaming: 5 s).
QUICK_RECOVERY_WAIT_SECONDS = 0.5


class _RecoveryAsyncio:
    """``asyncio`` as faust.tables.recovery sees it, with a shorter ``wait_for``.

    Under transactions every changelog ends with a commit marker, which a read_committed
    consumer never delivers: the last record Faust reads is one short of the highwater, and its
    recovery only notices that the consumer's position is past it ("Aborted tx until
    highwater") after two consecutive empty waits of its changelog queue, 2 x 5 s. That was 10 of
    the 13 s a worker restarted after kill -9 spent before processing (chaos suite). The only
    ``wait_for`` in that module is that wait; two empty waits of 0.5 s still mean no record
    arrived for a whole second while the consumer's position was past the highwater.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    def wait_for(awaitable: Awaitable[Any], timeout: float | None) -> Awaitable[Any]:
        if timeout is not None:
            timeout = min(timeout, QUICK_RECOVERY_WAIT_SECONDS)
        return asyncio.wait_for(awaitable, timeout)


def use_quick_aborted_tx_detection() -> None:
    """Make Faust's recovery see the end of a transactional changelog in ~1 s (idempotent)."""
    recovery_module: Any = faust_tables_recovery
    recovery_module.asyncio = _RecoveryAsyncio()
