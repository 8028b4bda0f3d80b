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

from collections.abc import Iterable, Mapping
from typing import Any, cast

from faust.transport.drivers import aiokafka as faust_aiokafka


async def _highwaters_from_the_broker(self: Any, partitions: Iterable[Any]) -> Mapping[Any, int]:
    consumer = self._ensure_consumer()
    return cast(Mapping[Any, int], await consumer.end_offsets(list(partitions)))


def use_broker_highwaters_for_recovery() -> None:
    """Make Faust's consumer thread ask the broker for changelog highwaters (idempotent)."""
    thread_class: Any = faust_aiokafka.AIOKafkaConsumerThread
    thread_class._highwaters = _highwaters_from_the_broker
