"""aiokafka's traceback for a broker answer it cannot decode, held back for one request.

When a response does not parse, aiokafka logs "Unexpected exception in AIOKafkaConnection" with
a 30-line traceback from its protocol decoder and closes the connection; the request then fails
with "Connection ... closed". The lag sampler's all-offsets request meets exactly that on Tansu
at every worker start, and the sampler's own warning says what happened and what it does about
it in one line. ``UndecodableAnswers`` drops those records from ``aiokafka.conn`` while the
request runs and keeps the decode error, so the one line can name it. Any other record, and a
decode failure outside the block, still reaches the log.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Final

_CONNECTION_LOGGER: Final = "aiokafka.conn"
_UNEXPECTED: Final = "Unexpected exception in AIOKafkaConnection"


class UndecodableAnswers(logging.Filter):
    """``with UndecodableAnswers():`` around one request; ``describe(error)`` afterwards."""

    def __init__(self, *, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled
        #: The decode errors held back, oldest first.
        self.held: list[BaseException] = []

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if record.getMessage() == _UNEXPECTED and isinstance(error, ValueError):
            self.held.append(error)
            return False
        return True

    def __enter__(self) -> UndecodableAnswers:
        if self.enabled:
            logging.getLogger(_CONNECTION_LOGGER).addFilter(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        logging.getLogger(_CONNECTION_LOGGER).removeFilter(self)

    def describe(self, error: BaseException) -> str:
        """``error`` in one line, with the answer aiokafka could not decode if that was why."""
        text = str(error) or type(error).__name__  # aiokafka's errors name their type
        if self.held:
            text += "; aiokafka could not decode the broker's answer"
        return text
