"""Ticks wait for the completions already on the broker (docs/intake-and-reruns.md).

Ticks and completions of a date share a partition number but not a topic, so Faust may hand the
agent a tick before completions that were on the broker first: after a restart both arrive in
the same fetch. A tick decides deadlines and cleanup, which must see those completions, so the
agent puts a tick off while the worker has not processed every completion record the broker
holds on the tick's partition; the timer sends it again (``TICK_RESEND_AFTER``).

The hold is bounded: when the partition's end offset has not moved for ``hold_limit`` and the
worker still has not reached it (a transaction marker at the end of the log, or a restart with
nothing new to read, where no processed offset is known yet), that end is accepted and the tick
is handled, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from phaseflow.streams.core.clock import Clock

log = logging.getLogger(__name__)

#: Longest a tick is put off for one unchanged end offset of the completions partition.
BACKLOG_HOLD_LIMIT = timedelta(seconds=15)


class CompletionBacklog:
    """Per completions partition: the next offset to process, against the broker's end."""

    def __init__(
        self,
        end_offset: Callable[[int], int | None],
        clock: Clock,
        *,
        hold_limit: timedelta = BACKLOG_HOLD_LIMIT,
    ) -> None:
        #: The completions partition's end offset as last fetched (None: not known yet).
        self._end_offset = end_offset
        self._clock = clock
        self._hold_limit = hold_limit
        self._next: dict[int, int] = {}
        #: partition -> (end offset being waited for, since when).
        self._holding: dict[int, tuple[int | None, datetime]] = {}
        #: partition -> an end offset accepted after a full hold: not waited for again.
        self._accepted: dict[int, int | None] = {}

    def processed(self, partition: int, offset: int) -> None:
        """A completion record of ``partition`` was handled."""
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def holds(self, partition: int) -> bool:
        """Whether a tick on ``partition`` must wait for completions not processed yet."""
        end = self._end_offset(partition)
        if not self._behind(partition, end):
            self._holding.pop(partition, None)
            return False
        now = self._clock.now()
        waited_for, since = self._holding.get(partition, (end, now))
        if waited_for != end:  # the end moved: new records, wait for them afresh
            since = now
        self._holding[partition] = (end, since)
        if now - since < self._hold_limit:
            log.info(
                "tick on partition %d put off: completions up to offset %s not processed yet "
                "(processed up to %s)",
                partition,
                end,
                self._next.get(partition),
            )
            return True
        log.warning(
            "completions partition %d: end offset %s not reached after %s (processed up to %s); "
            "taking it as reached (transaction markers, or nothing new since a restart)",
            partition,
            end,
            self._hold_limit,
            self._next.get(partition),
        )
        self._accepted[partition] = end
        self._holding.pop(partition, None)
        return False

    def _behind(self, partition: int, end: int | None) -> bool:
        if partition in self._accepted and self._accepted[partition] == end:
            return False
        if end == 0:
            return False
        done = self._next.get(partition)
        return end is None or done is None or done < end
