"""A WARNING for every run of offsets Faust skips on a topic that holds no transaction markers.

faust-streaming 0.15 takes any jump between the offsets it delivers on a partition for a gap
of transaction markers (or aborted records) and commits past it. On a topic written in
transactions that is right; on a topic only ever written outside transactions there is
nothing to skip, so a gap there means records Faust fetched and never handed to the agent,
lost without a line in the log. That is how 300 player reports disappeared after a kill -9
(docs/failure-modes.md 7.; the cause is fixed in ``streams/faust_fetch_partitions.py``).

``report_skipped_offsets`` makes such a loss say so: the progress and tick topics are written
only by phaseflow's side producer, never in a transaction, and a gap Faust records on one of
them is logged as a WARNING with the partition and the offsets skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from faust.transport.consumer import Consumer

log = logging.getLogger(__name__)

_INSTALLED = "__phaseflow_report_skipped_offsets__"
#: Topics written outside transactions only (every app built in this process adds its own).
_WATCHED: set[str] = set()


def report_skipped_offsets(topics: Iterable[str]) -> None:
    """Log a WARNING whenever Faust records a gap on one of ``topics`` (idempotent patch)."""
    _WATCHED.update(topics)
    consumer_class: Any = Consumer
    if getattr(consumer_class, _INSTALLED, False):
        return
    add_gap = consumer_class._add_gap

    async def add_gap_reported(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        # Faust calls this with the first offset after the last one delivered and the offset
        # of the record being delivered now: the ones in between were never handed over.
        if tp.topic in _WATCHED and offset_to > offset_from:
            log.warning(
                "%s[%d]: Faust went from offset %d to %d, skipping %d-%d (never handed to the "
                "agent), and will commit past them; nothing on this topic is written in a "
                "transaction, so those %d record(s) are lost (docs/failure-modes.md 7.)",
                tp.topic,
                tp.partition,
                offset_from - 1,
                offset_to,
                offset_from,
                offset_to - 1,
                offset_to - offset_from,
            )
        await add_gap(self, tp, offset_from, offset_to)

    consumer_class._add_gap = add_gap_reported
    setattr(consumer_class, _INSTALLED, True)
