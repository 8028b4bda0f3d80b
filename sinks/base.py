"""The interface every sink follows: buffer rows, flush them in order, report what is durable.

A sink is used like this::

    async with sink:                 # start(): setup() (tables) and the background flusher
        seq = sink.add(row)          # raises SinkBackpressureError when the buffer is full
        ...
        if sink.durable_seq >= seq:  # everything added up to ``seq`` is written
            commit_offsets()
    # stop(): flush what is left, then close

Rows are written strictly in the order they were added, one batch at a time. A batch that fails
stays at the front, with its identity (``Batch.batch_id``), and is retried by the next flush, so
nothing is lost, reordered or skipped. ``durable_seq`` only moves past a row once the row is
written (or handed to dead letters), which is what lets a Kafka consumer commit after the write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from phaseflow.streams.core.lifecycle import AsyncService

log = logging.getLogger(__name__)

R = TypeVar("R")


class SinkBackpressureError(RuntimeError):
    """The buffer is at its limit: the caller must slow down (pause consuming) and retry later."""


class SinkFlushError(RuntimeError):
    """A flush did not complete; its rows stay buffered and the next flush retries them."""


@dataclass
class SinkMetrics:
    """Counters and optional callbacks a metrics exporter (Prometheus) can hook into.

    Counters are cumulative. ``oldest_unwritten_age`` is wired by the sink to a function giving the
    age in seconds of the oldest row not yet written (``None`` when everything is written).
    """

    on_flush: Callable[[int, float], None] | None = None  # (rows, seconds)
    on_failure: Callable[[BaseException], None] | None = None
    on_retry: Callable[[BaseException], None] | None = None
    on_dead_letter: Callable[[str], None] | None = None  # (reason)
    flushes: int = 0
    rows_written: int = 0
    rows_dead_lettered: int = 0
    failures: int = 0
    retries: int = 0
    last_flush_seconds: float = 0.0
    flush_seconds_total: float = 0.0
    oldest_unwritten_age: Callable[[], float | None] = field(default=lambda: None)

    def record_flush(self, rows: int, seconds: float) -> None:
        self.flushes += 1
        self.rows_written += rows
        self.last_flush_seconds = seconds
        self.flush_seconds_total += seconds
        if self.on_flush is not None:
            self.on_flush(rows, seconds)

    def record_failure(self, exc: BaseException) -> None:
        self.failures += 1
        if self.on_failure is not None:
            self.on_failure(exc)

    def record_retry(self, exc: BaseException) -> None:
        self.retries += 1
        if self.on_retry is not None:
            self.on_retry(exc)

    def record_dead_letter(self, reason: str) -> None:
        self.rows_dead_lettered += 1
        if self.on_dead_letter is not None:
            self.on_dead_letter(reason)


@dataclass(frozen=True)
class Entry(Generic[R]):
    """One buffered row with its sequence number and when it was added (monotonic seconds)."""

    seq: int
    row: R
    added_at: float


@dataclass
class Batch(Generic[R]):
    """The rows of one flush. Kept (same id, same rows) until written, so a retry is the same
    batch and a sink can resume it (e.g. skip the chunks already staged)."""

    entries: Sequence[Entry[R]]
    batch_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    attempts: int = 0
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def last_seq(self) -> int:
        return self.entries[-1].seq


class BufferedSink(AsyncService, Generic[R]):
    """Buffering, size/time flushing, ordering and backpressure; subclasses write one batch."""

    def __init__(
        self,
        *,
        batch_rows: int = 500,
        flush_seconds: float = 1.0,
        max_buffer_rows: int = 10_000,
        max_batch_rows: int | None = None,
        failure_backoff_seconds: float = 1.0,
        max_failure_backoff_seconds: float = 30.0,
        metrics: SinkMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if batch_rows < 1 or max_buffer_rows < batch_rows:
            raise ValueError("need 1 <= batch_rows <= max_buffer_rows")
        self.batch_rows = batch_rows
        #: A flush is due at ``batch_rows``; a batch takes up to this many of the rows buffered
        #: by then (more than ``batch_rows`` only when writing fell behind: a backlog drains in
        #: fewer, larger batches, so a sink behind its input catches up instead of paying a
        #: whole write, e.g. a MERGE, per ``batch_rows``).
        self.max_batch_rows = max(batch_rows, max_batch_rows or batch_rows)
        self.flush_seconds = flush_seconds
        self.max_buffer_rows = max_buffer_rows
        self.metrics = metrics or SinkMetrics()
        self.metrics.oldest_unwritten_age = self.oldest_unwritten_age
        self._failure_backoff = failure_backoff_seconds
        self._max_failure_backoff = max_failure_backoff_seconds
        self._clock = clock
        self._buffer: deque[Entry[R]] = deque()
        self._batch: Batch[R] | None = None  # the front batch while it is being written/retried
        self._last_seq = 0
        self._durable_seq = 0
        self._flush_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._consecutive_failures = 0
        #: Why the last flush failed (``"BigQueryPermissionError: ..."``), or the last call being
        #: retried; None once a flush succeeds.
        self.last_error: str | None = None

    def describe_error(self, exc: BaseException) -> str:
        """``exc`` as the one line ``last_error`` and the logs show (a subclass knows better)."""
        return f"{type(exc).__name__}: {exc}"

    def note_retry(self, exc: BaseException) -> None:
        """A call of this sink failed and is retried: its error is the sink's problem until a
        flush succeeds (during setup, ``GET /status`` shows it instead of nothing)."""
        self.metrics.record_retry(exc)
        self.last_error = f"{self.describe_error(exc)} (retrying)"

    # --- what a subclass provides ---------------------------------------------------------

    @abstractmethod
    async def setup(self) -> None:
        """Create what the sink writes to (tables). Idempotent."""

    @abstractmethod
    async def write_batch(self, batch: Batch[R]) -> None:
        """Write every row of ``batch`` (or dead-letter it) or raise; may be called again with
        the same batch after a failure."""

    async def close(self) -> None:
        """Release clients; called once by stop() after the last flush."""

    # --- buffer -------------------------------------------------------------------------

    def add(self, row: R) -> int:
        """Buffer ``row``; return its sequence number (see :attr:`durable_seq`)."""
        if len(self._buffer) >= self.max_buffer_rows:
            raise SinkBackpressureError(
                f"sink buffer holds {len(self._buffer)} rows (limit {self.max_buffer_rows})"
            )
        self._last_seq += 1
        self._buffer.append(Entry(self._last_seq, row, self._clock()))
        if len(self._buffer) >= self.batch_rows:
            self._wake.set()
        return self._last_seq

    @property
    def buffered(self) -> int:
        """Rows added and not yet written (including a batch being retried)."""
        return len(self._buffer)

    @property
    def has_capacity(self) -> bool:
        return len(self._buffer) < self.max_buffer_rows

    @property
    def last_seq(self) -> int:
        """The sequence number of the last row added (0 before the first)."""
        return self._last_seq

    @property
    def durable_seq(self) -> int:
        """Every row with a sequence number up to this one is written or dead-lettered."""
        return self._durable_seq

    def oldest_unwritten_age(self) -> float | None:
        """Seconds since the oldest row not yet written was added; None if there is none."""
        if not self._buffer:
            return None
        return max(0.0, self._clock() - self._buffer[0].added_at)

    # --- flushing -----------------------------------------------------------------------

    async def flush(self) -> None:
        """Write everything buffered when called, batch by batch, in order; raise
        :class:`SinkFlushError` on the first batch that fails (it is kept for the next flush)."""
        async with self._flush_lock:
            target = self._last_seq
            while self._buffer and self._buffer[0].seq <= target:
                await self._flush_one()

    async def _flush_one(self) -> None:
        if self._batch is None:
            count = min(self.max_batch_rows, len(self._buffer))
            self._batch = Batch([self._buffer[i] for i in range(count)])
        batch = self._batch
        batch.attempts += 1
        began = time.monotonic()
        try:
            await self.write_batch(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._consecutive_failures += 1
            self.last_error = self.describe_error(exc)
            self.metrics.record_failure(exc)
            raise SinkFlushError(
                f"batch {batch.batch_id} ({len(batch.entries)} rows, attempt {batch.attempts}) "
                f"failed: {self.last_error}"
            ) from exc
        for _ in batch.entries:
            self._buffer.popleft()
        self._batch = None
        self._durable_seq = batch.last_seq
        self._consecutive_failures = 0
        self.last_error = None
        self.metrics.record_flush(len(batch.entries), time.monotonic() - began)

    def _due_in(self) -> float:
        """Seconds until the next flush is due (0: now)."""
        if not self._buffer:
            return self.flush_seconds
        if len(self._buffer) >= self.batch_rows:
            return 0.0
        return max(0.0, self.flush_seconds - (self._clock() - self._buffer[0].added_at))

    async def _run(self) -> None:
        while True:
            if self._consecutive_failures:
                delay = min(
                    self._max_failure_backoff,
                    self._failure_backoff * 2 ** (self._consecutive_failures - 1),
                )
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._due_in())
            self._wake.clear()
            if self._buffer and self._due_in() <= 0:
                try:
                    await self.flush()
                except SinkFlushError as exc:
                    log.warning("sink flush failed, will retry: %s", exc)

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Run setup() and the background flusher. Idempotent."""
        if self._started:
            return
        await self.setup()
        self._task = asyncio.create_task(self._run(), name=f"{type(self).__name__}-flusher")
        self._started = True

    async def stop(self) -> None:
        """Stop the background flusher, flush what is buffered, close. Idempotent; raises
        :class:`SinkFlushError` if the final flush failed (the rows were not written)."""
        if not self._started:
            return
        self._started = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.flush()
        finally:
            await self.close()
