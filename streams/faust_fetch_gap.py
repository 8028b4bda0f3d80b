"""Records aiokafka fetched but Faust never handed to the agent are fetched again.

faust-streaming 0.15 drops fetched records in several places around a rebalance: ``getmany``
skips the records of a partition missing from its active set (paused for recovery while the
fetch was in flight) and stops iterating a batch when the flow is suspended or the generation
changed, and a batch fetched before the seek to the committed offsets can still be delivered
after it. aiokafka's position has moved past those records either way, and Faust seeks again
only at the next rebalance: the partition looks consumed to the fetcher and is never read.
Measured in the two-workers kill -9 test (exactly_once, ~1 run in 3 on a busy machine): the
survivor's completions partitions stood at aiokafka position 99 / 66 with Faust's read offset at
60 / 48 and nothing in progress, the day's next phase never fired, and only the lag watchdog's
restart (30-60 s later, or too late) read them.

A partition taken over with nothing committed yet shows it too: seen once in the same test
(2026-12-07, fresh-clone CI run), the survivor's completions partition 2 had 66 records, no
commit and nothing delivered, so there was no read offset to compare with and nothing repaired
it.

``FetchGapRepair`` compares, on a timer, each readiness partition's aiokafka position with what
Faust delivered (its read offset, or its committed offset if further on; with neither, the
partition's log start, since a group with no commit reads from the earliest offset). When the
position is ahead by more than one offset (one may be a transaction marker), nothing was
delivered for ``hold`` and no record or commit is in progress, it seeks the partition back to
the first offset not delivered. At worst that delivers one record twice (Faust's read offset is
the last record delivered, or after a seek the next one), which the readiness agent drops as a
duplicate completion, and a tick handled twice only re-evaluates its date. A gap that is back
unchanged after its repair is not repaired again: what lies there delivers nothing (aborted
transactions and their markers under read_committed), it is not a loss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from aiokafka.errors import KafkaError
from faust.types import TP

from phaseflow.streams.core.faust_table_writes import lock_holder
from phaseflow.streams.faust_consumer_view import describe_partition

log = logging.getLogger(__name__)

#: How long a partition's undelivered records must stay untouched before they are re-fetched.
FETCH_GAP_HOLD_SECONDS = 5.0
#: How often the repair looks at the partitions.
FETCH_GAP_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class PartitionFetch:
    """One partition as Faust and aiokafka see it."""

    delivered_up_to: int | None  # the first offset Faust may not have handed over yet
    position: int | None  # aiokafka's next offset to fetch
    deliverable: bool  # assigned, active, not paused or buffer-full, not in recovery


class FetchGapTracker:
    """Decides, per partition, when an unchanged gap between fetched and delivered is a loss."""

    def __init__(self, hold: float) -> None:
        self._hold = hold
        self._since: dict[TP, tuple[tuple[int, int], float]] = {}
        #: The (delivered, position) each partition's last repair started from.
        self._repaired: dict[TP, tuple[int, int]] = {}

    def seek_target(self, tp: TP, fetch: PartitionFetch, now: float) -> int | None:
        """The offset to seek ``tp`` back to, or None while there is nothing to repair."""
        delivered, position = fetch.delivered_up_to, fetch.position
        if not fetch.deliverable or delivered is None or position is None:
            self._since.pop(tp, None)
            return None
        if position <= delivered + 1:  # all delivered (or one transaction marker left)
            self._since.pop(tp, None)
            return None
        seen = (delivered, position)
        if self._repaired.get(tp) == seen:  # re-read and still nothing to deliver
            return None
        first = self._since.get(tp)
        if first is None or first[0] != seen:
            self._since[tp] = (seen, now)
            return None
        if now - first[1] < self._hold:
            return None
        self._since.pop(tp, None)
        self._repaired[tp] = seen
        return delivered


def partition_fetch(app: object, tp: TP) -> PartitionFetch:
    """Faust's and aiokafka's view of ``tp`` (Faust and aiokafka internals, read-only)."""
    consumer = app.consumer  # type: ignore[attr-defined]
    read = consumer._read_offset.get(tp)
    committed = consumer._committed_offset.get(tp)
    known = [offset for offset in (read, committed) if offset is not None]
    active = consumer._active_partitions
    deliverable = (
        tp in consumer.assignment()
        and (active is None or tp in active)
        and tp not in consumer._paused_partitions
        and tp not in consumer._buffered_partitions
        and bool(consumer.flow_active)
        and not app.in_recovery  # type: ignore[attr-defined]
    )
    client = getattr(consumer._thread, "_consumer", None)
    position = None
    if client is not None:
        assignment = client._subscription.subscription
        if assignment is not None and tp in assignment.assignment.tps:
            position = assignment.assignment.state_value(tp)._position
    return PartitionFetch(max(known) if known else None, position, deliverable)


class FetchGapRepair:
    """The timer's job: find partitions with undelivered fetched records and re-fetch them."""

    def __init__(
        self,
        app: object,
        topics: Iterable[str],
        clock: Callable[[], float],
        *,
        hold: float = FETCH_GAP_HOLD_SECONDS,
    ) -> None:
        self._app = app
        self._topics = frozenset(topics)
        self._clock = clock
        self._tracker = FetchGapTracker(hold)
        self.repairs = 0

    async def check(self) -> int:
        """Seek back every partition whose fetched records Faust dropped; how many."""
        app: object = self._app
        if lock_holder(app) != "nobody":  # a record or a commit in progress: not idle
            return 0
        consumer = app.consumer  # type: ignore[attr-defined]
        repaired = 0
        for tp in sorted(consumer.assignment()):
            if tp.topic not in self._topics:
                continue
            fetch = partition_fetch(app, tp)
            if fetch.delivered_up_to is None and fetch.deliverable and (fetch.position or 0) > 1:
                fetch = replace(fetch, delivered_up_to=await _log_start(consumer, tp))
            target = self._tracker.seek_target(tp, fetch, self._clock())
            if target is None:
                continue
            log.warning(
                "%s[%d]: fetched up to offset %s but Faust delivered only up to %d (records "
                "dropped around a rebalance); fetching them again (%s)",
                tp.topic,
                tp.partition,
                fetch.position,
                target,
                describe_partition(app, tp.topic, tp.partition),
            )
            await _seek(consumer, tp, target)
            repaired += 1
        self.repairs += repaired
        return repaired


async def _log_start(consumer: object, tp: TP) -> int | None:
    """The partition's earliest offset, where a group with no commit starts reading; None if
    the broker does not answer (the next check asks again)."""
    thread = consumer._thread  # type: ignore[attr-defined]

    async def ask() -> int | None:
        starts = await thread._ensure_consumer().beginning_offsets([tp])
        start = starts.get(tp)
        return start if isinstance(start, int) else None

    try:
        start: int | None = await thread.call_thread(ask)
    except KafkaError as error:
        log.debug("%s[%d]: log start unknown: %s", tp.topic, tp.partition, error)
        return None
    return start


async def _seek(consumer: object, tp: TP, offset: int) -> None:
    """Seek in the consumer's own thread (aiokafka is not thread-safe), then let Faust deliver
    from ``offset`` on (its read offset, as Faust's own ``seek`` sets it)."""
    thread = consumer._thread  # type: ignore[attr-defined]

    async def seek_there() -> None:
        thread._ensure_consumer().seek(tp, offset)

    await thread.call_thread(seek_there)
    consumer._read_offset[tp] = offset  # type: ignore[attr-defined]
