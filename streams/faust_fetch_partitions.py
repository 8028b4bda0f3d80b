"""Faust's fetches take only the partitions that were active when the fetch was asked for.

faust-streaming 0.15 hands aiokafka its *live* set of active partitions (``getmany``, in the
consumer's thread). aiokafka's ``Fetcher.fetched_records`` reads that set again each time its
wait for records ends, and takes an empty set to mean "every partition". At the end of a table
recovery Faust pauses the changelog partitions while the stream partitions are still paused for
the recovery, so the set is empty for a moment: a fetch waiting then returns the buffered records
of every partition, stream partitions included, moving aiokafka's position past them, and
Faust's ``getmany`` drops them because their partition is not active. When that happens after
the seek to the committed offsets (``streams/faust_stream_seek.py``), nothing fetches them again:
the next record delivered is far ahead of Faust's read offset, Faust takes the distance for a gap
of transaction markers and commits over it.

Seen in the kill -9 chaos test (2026-12-07, logging Faust's gaps and each progress record the
coordinator handled): the restarted worker's prediction workers reported 300 of 450 players on
``prediction-progress`` while the tables were being recovered; after the seek to offset 1 the
first record Faust delivered was offset 301, it recorded the gap 2-301 and committed 451. The
batch never completed (300 reports lost, nothing logged) in 5 of 6 fresh-clone CI runs that day.
The same loss explains the readiness records "fetched but never delivered" of
docs/failure-modes.md 5.

``fetch_only_active_partitions`` gives aiokafka a frozen copy of the set taken when Faust asks,
and asks for nothing when it is empty, so a fetch never takes a partition Faust did not ask for.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_INSTALLED = "__phaseflow_fetch_only_active_partitions__"


def fetch_only_active_partitions() -> None:
    """Patch Faust's aiokafka consumer thread to fetch a snapshot of its active partitions."""
    thread_class: Any = AIOKafkaConsumerThread
    if getattr(thread_class, _INSTALLED, False):
        return
    getmany = thread_class.getmany

    # Faust's own signature, timeout included.
    async def getmany_of_a_snapshot(
        self: Any,
        active_partitions: Any,
        timeout: float,  # noqa: ASYNC109
    ) -> Any:
        if active_partitions is None:  # a client-only app: every partition, as before
            return await getmany(self, None, timeout)
        asked = frozenset(active_partitions)
        if not asked:  # aiokafka would take this for "every partition"
            return {}
        return await getmany(self, asked, timeout)

    thread_class.getmany = getmany_of_a_snapshot
    setattr(thread_class, _INSTALLED, True)
