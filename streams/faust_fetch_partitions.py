"""A fetch Faust asks for never takes every partition because its active set is empty.

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

``fetch_only_active_partitions`` gives aiokafka a view of Faust's set that is never taken for
"every partition": membership is still read live (a partition Faust resumes while a fetch waits
is returned by that fetch, as before), but an empty set takes nothing. A frozen copy would do
as well for the loss, but a partition resumed at the end of a recovery would then wait for the
fetch in flight to time out (up to 1 s) before its first record is delivered.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_INSTALLED = "__phaseflow_fetch_only_active_partitions__"


class ActivePartitions:
    """Faust's live set of active partitions as aiokafka reads it: ``tp in view`` and iteration
    follow the set, but the view is never falsy, so an empty set asks for no partition."""

    __slots__ = ("_live",)

    def __init__(self, live: AbstractSet[Any]) -> None:
        self._live = live

    def __contains__(self, tp: object) -> bool:
        return tp in self._live

    def __iter__(self) -> Iterator[Any]:
        return iter(frozenset(self._live))

    def __len__(self) -> int:
        return len(self._live)

    def __bool__(self) -> bool:
        return True


def fetch_only_active_partitions() -> None:
    """Patch Faust's aiokafka consumer thread so a fetch never takes every partition."""
    thread_class: Any = AIOKafkaConsumerThread
    if getattr(thread_class, _INSTALLED, False):
        return
    getmany = thread_class.getmany

    # Faust's own signature, timeout included.
    async def getmany_of_active_partitions(
        self: Any,
        active_partitions: Any,
        timeout: float,  # noqa: ASYNC109
    ) -> Any:
        if active_partitions is None:  # a client-only app: every partition, as before
            return await getmany(self, None, timeout)
        return await getmany(self, ActivePartitions(active_partitions), timeout)

    thread_class.getmany = getmany_of_active_partitions
    setattr(thread_class, _INSTALLED, True)
