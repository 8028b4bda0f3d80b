"""Repeated library log lines, collapsed: the first of a kind shown, the rest counted.

With the broker away, every Kafka client of a worker (Faust's consumer, a transactional
producer per partition, the side producer, the lag monitor, the listeners) retries on its own
and logs each attempt: ~370 lines a second from aiokafka on one worker, thousands in a short
outage, and the one line that says what is wrong scrolls away. ``RepeatedLogFilter`` lets the
first record of a kind through (kind: logger, level and message template, so "Unable connect
to node with id %s" is one kind whatever the node), counts the repeats for ``window`` seconds
without showing them, and shows the next repeat after the window with how many were left out:
an outage of an hour is a few lines a minute, each still saying what failed.

Only library loggers (aiokafka, Faust, mode) and records at WARNING or above are collapsed:
phaseflow's own lines are written to be read one by one (each dead letter, each skipped offset)
and are never held back, and INFO chatter is not a flood of errors.

The filter sits on the root logger's handlers (a logger's own filters do not see records
propagated from its children). A record passes every handler's filter: the first decision is
kept on the record so that two handlers never disagree about it, and a record is counted once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

#: Loggers whose repeats are collapsed (these names and their children).
LIBRARY_LOGGERS: Final = ("aiokafka", "faust", "mode", "kafka")
_DECISION: Final = "_phaseflow_repeat_shown"
#: Kinds remembered at most; past it, kinds without repeats outside their window are forgotten.
_MAX_KINDS: Final = 2048


@dataclass
class _Kind:
    shown_at: float
    suppressed: int = 0


class RepeatedLogFilter(logging.Filter):
    """Shows the first library record of a kind, then at most one per ``window_seconds``; a
    shown repeat names how many were left out since the previous one."""

    def __init__(
        self,
        window_seconds: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        level: int = logging.WARNING,
        loggers: tuple[str, ...] = LIBRARY_LOGGERS,
    ) -> None:
        super().__init__()
        self.window_seconds = window_seconds
        self._clock = clock
        self._level = level
        self._loggers = loggers
        self._kinds: dict[tuple[str, int, str], _Kind] = {}
        # Faust's consumer runs in a thread of its own and logs from it.
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        decided = getattr(record, _DECISION, None)
        if decided is None:
            decided = self._decide(record)
            setattr(record, _DECISION, decided)
        return bool(decided)

    def _collapses(self, record: logging.LogRecord) -> bool:
        if self.window_seconds <= 0 or record.levelno < self._level:
            return False
        name = record.name
        return any(name == root or name.startswith(f"{root}.") for root in self._loggers)

    def _decide(self, record: logging.LogRecord) -> bool:
        if not self._collapses(record):
            return True
        kind = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen.shown_at < self.window_seconds:
                seen.suppressed += 1
                return False
            if seen is None and len(self._kinds) >= _MAX_KINDS:
                self._forget_quiet_kinds(now)
            self._kinds[kind] = _Kind(shown_at=now)
            left_out = seen.suppressed if seen is not None else 0
        if left_out:
            # The record goes to every handler: the count is written into it once, here.
            record.msg = (
                f"{record.getMessage()} [{left_out} more like this in the last "
                f"{self.window_seconds:g} s not shown]"
            )
            record.args = ()
        return True

    def _forget_quiet_kinds(self, now: float) -> None:
        quiet = [
            kind
            for kind, seen in self._kinds.items()
            if not seen.suppressed and now - seen.shown_at >= self.window_seconds
        ]
        for kind in quiet:
            del self._kinds[kind]


def collapse_repeats_on_root(window_seconds: float) -> RepeatedLogFilter:
    """Put one ``RepeatedLogFilter`` on every handler of the root logger (those it already
    has; again after a reconfiguration replaces them) and return it."""
    root = logging.getLogger()
    existing = next(
        (
            found
            for handler in root.handlers
            for found in handler.filters
            if isinstance(found, RepeatedLogFilter)
        ),
        None,
    )
    shared = existing or RepeatedLogFilter(window_seconds)
    shared.window_seconds = window_seconds
    for handler in root.handlers:
        if shared not in handler.filters:
            handler.addFilter(shared)
    return shared
