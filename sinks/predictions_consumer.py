"""Feeds ``{prefix}.predictions`` into the BigQuery sink, committing offsets only after the MERGE.

:class:`SinkRunner` does this for any topic of events and any
:class:`~phaseflow.sinks.base.BufferedSink` of them (the audit trail uses it too);
:class:`PredictionSinkRunner` is the predictions' one. The runner is its own consumer group (manual
commits, ``read_committed``). For every record it consumes it remembers ``(sink sequence number,
partition, offset)``; it commits a partition's offset only once the sink's
:attr:`~phaseflow.sinks.base.BufferedSink.durable_seq` has passed every row up to it, i.e. once the
MERGE holding those rows succeeded. A crash or an outage therefore re-delivers uncommitted
predictions, and the MERGE (latest ``created_at`` per key wins, re-runs are no-ops) makes the
re-delivery harmless: nothing lost, nothing doubled.

Undecodable records go to ``{prefix}.dead-letters`` (original bytes, reason) and never stop the
stream. When the sink's buffer is full (BigQuery down), the runner pauses its partitions and keeps
polling (so it stays in the group) until the sink has room again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from phaseflow.models.codec import EventDecodeError, decode, encode
from phaseflow.models.events import Event, Prediction
from phaseflow.sinks.base import BufferedSink, SinkBackpressureError, SinkFlushError, SinkMetrics
from phaseflow.sinks.bigquery_predictions import PredictionSink
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.envelope import Origin, dead_letter
from phaseflow.streams.core.lifecycle import AsyncService
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName

log = logging.getLogger(__name__)

_POLL_MS: Final = 200
_MAX_RECORDS: Final = 2000

E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class _Tracked(Generic[E]):
    seq: int  # committable once sink.durable_seq >= seq
    tp: TopicPartition
    offset: int
    raw: bytes | None
    key: bytes | None
    row: E | None
    replay_of: str | None = None  # the record's replay header, for a later dead letter


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: SinkRunner[Any]) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        del assigned
        self._runner.assigned.set()


class SinkRunner(AsyncService, Generic[E]):
    """Consumes ``topic`` (records of ``event_type``) into ``sink``; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        topic: TopicName,
        event_type: type[E],
        sink: BufferedSink[E],
        group_id: str,
        revoke_flush_timeout: float | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        **consumer_options: Any,
    ) -> None:
        self.settings = settings
        self.topic = settings.topic(topic)
        self.event_type = event_type
        self.dead_letter_topic = settings.topic(TopicName.DEAD_LETTERS)
        self.group_id = group_id
        self.sink = sink
        self._consumer_options = consumer_options
        self._revoke_flush_timeout = revoke_flush_timeout or 2 * settings.bigquery_timeout_seconds
        self._clock = clock
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._tracked: deque[_Tracked[E]] = deque()
        #: Offsets durable in BigQuery and not yet committed (a failed or cancelled commit).
        self._committable: dict[TopicPartition, int] = {}
        self._backlog: deque[Any] = deque()  # consumed records not yet accepted by the sink
        self._paused = False
        self.assigned = asyncio.Event()
        self.dead_letters_sent = 0
        self.records_consumed = 0
        self.commits = 0

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the dead-letter producer, the sink (tables) and the consumer. Idempotent.

        If a step fails (broker or BigQuery unreachable), what was started is closed again and
        the error is raised, so the caller can retry with a fresh runner."""
        if self._task is not None:
            return
        try:
            self._producer = kafka_clients.producer(
                self.settings,
                acks="all",
                enable_idempotence=self.settings.idempotent_producer,
            )
            await self._producer.start()
            await self.sink.start()
            self._consumer = kafka_clients.consumer(
                self.settings,
                group_id=self.group_id,
                # Static membership: a worker restarted within the session timeout keeps its
                # partitions without a rebalance.
                group_instance_id=self.settings.group_instance_id,
                enable_auto_commit=False,
                isolation_level="read_committed",
                auto_offset_reset="earliest",
                **self._consumer_options,
            )
            await self._consumer.start()
            self._consumer.subscribe([self.topic], listener=_Rebalance(self))
        except BaseException:
            await self._close_after_failed_start()
            raise
        self._task = asyncio.create_task(self._run(), name=f"sink-runner-{self.topic}")

    async def _close_after_failed_start(self) -> None:
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        for client in (consumer, producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()
        with contextlib.suppress(Exception):
            await self.sink.stop()  # nothing was added: nothing to flush
        with contextlib.suppress(Exception):
            await self.sink.close()  # stop() does not close a sink whose setup failed

    async def stop(self) -> None:
        """Stop consuming, flush the sink, commit what it wrote, close everything. Idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await self.sink.stop()
        except SinkFlushError as exc:
            log.warning("final flush failed; uncommitted records will be re-delivered: %s", exc)
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        try:
            if consumer is not None:
                await self._commit(consumer)
        finally:
            if consumer is not None:
                await consumer.stop()
            if producer is not None:
                await producer.stop()

    # --- the loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 -- set by start()
        while True:
            try:
                await self._step(consumer)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Never let one bad moment (a broker hiccup, a dead-letter send) end the loop.
                log.exception("sink runner on %s: step failed; continuing", self.topic)
                await asyncio.sleep(1.0)

    async def _step(self, consumer: AIOKafkaConsumer) -> None:
        await self._drain_backlog()
        if self._backlog:
            if not self._paused:
                consumer.pause(*consumer.assignment())
                self._paused = True
        elif self._paused:
            consumer.resume(*consumer.assignment())
            self._paused = False
        # Polling while paused returns nothing but keeps the member alive in its group.
        batches = await consumer.getmany(timeout_ms=_POLL_MS, max_records=_MAX_RECORDS)
        for records in batches.values():
            self._backlog.extend(records)
            self.records_consumed += len(records)
        await self._drain_backlog()
        await self._commit(consumer)

    async def _drain_backlog(self) -> None:
        while self._backlog:
            record = self._backlog[0]
            tp = TopicPartition(record.topic, record.partition)
            if record.value is None:  # a tombstone on the compacted topic: nothing to write
                self._tracked.append(
                    _Tracked(self.sink.last_seq, tp, record.offset, None, record.key, None)
                )
                self._backlog.popleft()
                continue
            try:
                row = decode(
                    self.event_type, record.value, max_bytes=self.settings.max_message_bytes
                )
            except EventDecodeError as exc:
                origin = Origin.of(record)
                await self._send_dead_letter(origin, record.value, exc.reason, exc.error_type)
                self._tracked.append(
                    _Tracked(self.sink.last_seq, tp, record.offset, None, record.key, None)
                )
                self._backlog.popleft()
                continue
            try:
                seq = self.sink.add(row)
            except SinkBackpressureError:
                return  # keep the record; the partitions get paused until the sink has room
            self._tracked.append(
                _Tracked(
                    seq,
                    tp,
                    record.offset,
                    record.value,
                    record.key,
                    row,
                    Origin.of(record).replay_of,
                )
            )
            self._backlog.popleft()

    async def _commit(
        self, consumer: AIOKafkaConsumer, only: set[TopicPartition] | None = None
    ) -> None:
        durable = self.sink.durable_seq
        while self._tracked and self._tracked[0].seq <= durable:
            entry = self._tracked.popleft()
            self._committable[entry.tp] = entry.offset + 1
        assignment = consumer.assignment()
        offsets = {
            tp: o
            for tp, o in self._committable.items()
            if tp in assignment and (only is None or tp in only)
        }
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 -- re-delivery after a failed commit is harmless
            # Kept in _committable: the next commit (at the latest the one in stop()) retries.
            log.warning("offset commit failed (will retry): %s", exc)
            return
        # Only now forget them: a commit cancelled by stop() must be sent again by stop().
        self.commits += 1
        for tp, offset in offsets.items():
            if self._committable.get(tp) == offset:
                del self._committable[tp]

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        consumer = self._consumer
        if consumer is None or not revoked:
            return
        try:
            await asyncio.wait_for(self.sink.flush(), timeout=self._revoke_flush_timeout)
        except (SinkFlushError, TimeoutError) as exc:
            log.warning("flush before rebalance failed; the new owner re-reads: %s", exc)
        await self._commit(consumer)
        # What we did not commit for these partitions is the new owner's to read again.
        self._tracked = deque(e for e in self._tracked if e.tp not in revoked)
        for tp in revoked:
            self._committable.pop(tp, None)
        self._backlog = deque(
            r for r in self._backlog if TopicPartition(r.topic, r.partition) not in revoked
        )

    # --- dead letters -------------------------------------------------------------------

    async def _send_dead_letter(
        self, origin: Origin, raw: bytes, reason: str, error_type: str
    ) -> None:
        producer = self._producer
        if producer is None:
            raise RuntimeError("SinkRunner used before start()")
        letter = dead_letter(
            origin, raw, error=reason, error_type=error_type, failed_at=self._clock()
        )
        await producer.send_and_wait(self.dead_letter_topic, encode(letter), key=origin.key)
        self.dead_letters_sent += 1

    async def _dead_letter_row(self, row: E, reason: str) -> None:
        """The sink's callback for a row BigQuery will never accept."""
        for entry in self._tracked:
            if entry.row is row and entry.raw is not None:
                origin = Origin(
                    entry.tp.topic, entry.tp.partition, entry.offset, entry.key, entry.replay_of
                )
                await self._send_dead_letter(origin, entry.raw, reason, "bigquery_rejected")
                return
        # Not from this runner's partitions any more (rebalanced): keep the row as we have it.
        key = getattr(row, "key", None)
        origin = Origin(self.topic, 0, 0, key.encode() if isinstance(key, str) else None)
        await self._send_dead_letter(origin, encode(row), reason, "bigquery_rejected")


class PredictionSinkRunner(SinkRunner[Prediction]):
    """Consumes predictions into a :class:`PredictionSink`; see the module docstring."""

    sink: PredictionSink

    def __init__(
        self,
        settings: Settings,
        *,
        sink: PredictionSink | None = None,
        metrics: SinkMetrics | None = None,
        group_id: str | None = None,
        **options: Any,
    ) -> None:
        if sink is None:
            sink = PredictionSink(settings, dead_letter=self._dead_letter_row, metrics=metrics)
        super().__init__(
            settings,
            topic=TopicName.PREDICTIONS,
            event_type=Prediction,
            sink=sink,
            group_id=group_id or f"{settings.app_id}.bigquery-predictions-sink",
            **options,
        )
