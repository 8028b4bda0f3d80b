"""Library log records held back while a block runs, for a caller that says the same in one line.

aiokafka logs what it meets on the way (a refused connection at ERROR, an answer it cannot decode
with a 30-line traceback) and then fails the request; a caller that turns that failure into one
line naming the cause and the fix would otherwise be preceded by aiokafka's own lines.
``HeldRecords`` is a filter put on the named loggers for the duration of a ``with`` block: the
records it matches are kept on it instead of being logged (the caller can still name them), and
every other record, and every record outside the block, is logged as usual. A logger's filters
see only the records logged on that very logger, so the names are the loggers the records are
logged on ("aiokafka" for aiokafka's client, "aiokafka.conn" for its connections).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType


class HeldRecords(logging.Filter):
    """``with HeldRecords(loggers, matches):``; ``held`` lists the records kept back."""

    def __init__(
        self,
        loggers: tuple[str, ...],
        matches: Callable[[logging.LogRecord], bool],
        *,
        enabled: bool = True,
    ) -> None:
        super().__init__()
        self._loggers = loggers
        self._matches = matches
        self.enabled = enabled
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if self._matches(record):
            self.held.append(record)
            return False
        return True

    def __enter__(self) -> HeldRecords:
        if self.enabled:
            for name in self._loggers:
                logging.getLogger(name).addFilter(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for name in self._loggers:
            logging.getLogger(name).removeFilter(self)


def is_undecodable_answer(record: logging.LogRecord) -> bool:
    """aiokafka's connection failing on a response it cannot parse (it then closes the
    connection, and the request fails with "Connection ... closed")."""
    error = record.exc_info[1] if record.exc_info else None
    return record.getMessage() == "Unexpected exception in AIOKafkaConnection" and isinstance(
        error, ValueError
    )


def is_refused_connection(record: logging.LogRecord) -> bool:
    """aiokafka's client failing to connect to a bootstrap address or a node."""
    return isinstance(record.msg, str) and record.msg.startswith("Unable connect to ")
