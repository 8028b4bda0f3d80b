"""The readiness agent: completions and timer ticks from Kafka into ``ReadinessProcessor``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import faust
import orjson
from faust.types import TP

from phaseflow.agents.backlog import CompletionBacklog
from phaseflow.agents.intake import DropReason
from phaseflow.agents.prompt_commit import OutputsSent, PromptCommit
from phaseflow.agents.readiness import ReadinessProcessor
from phaseflow.agents.write_back import WriteBackTable
from phaseflow.models.events import PhaseTrigger
from phaseflow.streams.core.clock import SystemClock
from phaseflow.streams.core.envelope import Origin
from phaseflow.streams.core.faust_events import current_event, handling
from phaseflow.streams.core.faust_table_writes import one_transaction
from phaseflow.streams.core.metrics import Metrics
from phaseflow.streams.core.publisher import Publisher
from phaseflow.streams.core.topics import TopicName

if TYPE_CHECKING:
    from phaseflow.streams.core.features import FeatureContext

log = logging.getLogger(__name__)


class _CountingPublisher:
    """Counts the processor's dead letters (by error type) on their way out."""

    def __init__(self, inner: Publisher, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def send(self, topic: TopicName, key: str, value: bytes) -> None:
        await self._inner.send(topic, key, value)
        if topic == TopicName.DEAD_LETTERS:
            try:
                error_type = str(orjson.loads(value).get("error_type", "unknown"))
            except (orjson.JSONDecodeError, AttributeError):
                error_type = "unknown"
            self._metrics.dead_letters.labels(error_type=error_type).inc()


class IntakeMetrics:
    """Intake's counts on ``/metrics``: dropped completions by reason, clamped timestamps."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def dropped(self, reason: DropReason) -> None:
        self._metrics.completions_dropped.labels(reason=reason).inc()

    def clamped(self) -> None:
        self._metrics.timestamps_clamped.inc()


#: Kafka's timestamp type of a record the broker stamped when appending it (LogAppendTime).
LOG_APPEND_TIME = 1


def record_time(timestamp: float | None, timestamp_type: int | None) -> datetime | None:
    """When the broker appended a consumed record (Faust: seconds since the epoch), as a UTC
    instant; None for a record its producer stamped (CreateTime: the publisher's clock)."""
    if timestamp_type != LOG_APPEND_TIME or timestamp is None or timestamp <= 0:
        return None
    return datetime.fromtimestamp(timestamp, UTC)


async def handle_batch(
    app: Any,
    events: list[Any],
    handle_record: Callable[[Any], Awaitable[list[PhaseTrigger]]],
    tables: Sequence[WriteBackTable],
) -> list[PhaseTrigger]:
    """Handle ``events`` in order, then store each key of ``tables`` they wrote, once; return
    the triggers fired."""
    partitions = {event.message.partition for event in events}
    # A batch's state writes and triggers commit together (exactly_once): else a crash can
    # keep the ledger saying "fired" without the trigger, or the reverse.
    async with one_transaction(app, partitions):
        fired: list[PhaseTrigger] = []
        try:
            for event in events:
                with handling(event):  # its partition, for table writes and outputs
                    fired += await handle_record(event.message)
        except BaseException:
            # The batch is not acknowledged, so its records come again; their dedup ids must
            # not be in the state they are checked against.
            for table in tables:
                table.discard()
            raise
        for table in tables:
            table.flush()
    return fired


#: How many times the agent lets the event loop run before it ends a batch on an empty queue.
#: Faust's fetcher hands records already fetched to the stream one by one, between other tasks:
#: without this a worker that keeps up sees an empty queue after every record (batches of one:
#: 617 events/s and 39,379 changelog records on the 40,000-event benchmark, at_least_once);
#: with 3 passes, 1,625 events/s and 7,396 records. A pass is one turn of the loop, no timer.
_READY_CHECKS = 3


async def _more_ready(stream: Any) -> bool:
    """Whether the stream has another record ready, after letting the loop run a little (a
    stream over something other than a Faust channel never has: each record is a batch)."""
    queue = getattr(stream.channel, "queue", None)
    if queue is None:
        return False
    for _ in range(_READY_CHECKS):
        if not queue.empty():
            return True
        await asyncio.sleep(0)
    return not queue.empty()


def observe_phase_duration(
    processor: ReadinessProcessor, metrics: Metrics, trigger: PhaseTrigger
) -> None:
    """The finished phase (the one before the trigger's): first completion to its trigger."""
    finished = processor.state(trigger.game_date, trigger.phase - 1)
    if finished is not None and finished.first_completion_at is not None:
        seconds = (trigger.triggered_at - finished.first_completion_at).total_seconds()
        metrics.phase_duration.labels(phase=str(trigger.phase - 1)).observe(max(0.0, seconds))


def install(ctx: FeatureContext) -> ReadinessProcessor:
    """Declare the readiness table, agent and deadline timer on ``ctx.app``; the processor is
    what the app wiring keeps (status views, the phase timing series)."""
    settings = ctx.settings
    metrics = ctx.metrics
    table = ctx.app.Table(
        "readiness",
        default=None,
        partitions=settings.kafka_topic_partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="raw"),
        help="Per (game_date, phase) readiness: processors seen, dedup ids, trigger ledger.",
    )
    # Keyed by processor, written from whichever date's partition a run arrives on: a worker
    # restores every changelog partition it owns, so a single worker keeps the whole history.
    durations = ctx.app.Table(
        "processor_durations",
        default=None,
        partitions=settings.kafka_topic_partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="raw"),
        help="Per processor: the newest run durations, for processor_slowdown alerts.",
    )
    # The agent handles records in batches; each key a batch touches is written to its Faust
    # table (a changelog record) once, when the batch ends (phaseflow.agents.write_back).
    batch_table = WriteBackTable(table, origin=current_event, within=handling)
    batch_durations = WriteBackTable(durations, origin=current_event, within=handling)
    batch_tables = (batch_table, batch_durations)
    # exactly_once: a batch that sent something commits at once (agents/prompt_commit.py).
    outputs = OutputsSent(ctx.publisher)
    prompt_commit = PromptCommit(ctx.app, outputs, enabled=settings.kafka_commit_after_outputs)
    processor = ReadinessProcessor(
        registry=ctx.registry,
        table=batch_table,
        publisher=_CountingPublisher(outputs, metrics),
        clock=ctx.clock,
        pipeline_timezone=settings.pipeline_timezone,
        max_message_bytes=settings.max_message_bytes,
        durations=batch_durations,
        future_tolerance=timedelta(seconds=settings.future_timestamp_tolerance_seconds),
        intake_counter=IntakeMetrics(metrics),
    )
    completions = settings.topic(TopicName.PHASE_COMPLETIONS)
    # One agent reads completions and ticks: both are keyed by game date, so a date's events
    # and ticks share a partition, its table entries and (exactly_once) its transaction.
    channel = ctx.app.topic(
        completions,
        settings.topic(TopicName.READINESS_TICKS),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.kafka_topic_partitions,
    )

    def completions_end(partition: int) -> int | None:
        """The completions partition's end offset from the consumer's last fetch (read
        committed under exactly_once), None while unknown or not assigned here."""
        try:
            end = ctx.app.consumer.highwater(TP(completions, partition))
        except AssertionError:  # aiokafka: "Partition is not assigned"
            return None
        return end if isinstance(end, int) and end >= 0 else None

    # Record timestamps are wall time. A sped-up clock (PHASEFLOW_CLOCK_SPEED, soak runs) lives
    # on another time line, so there the worker's own clock is the receive time; and the tick
    # hold, which is about fetch timing, runs on the wall clock.
    on_wall_time = isinstance(ctx.clock, SystemClock)
    wall = ctx.clock if on_wall_time else SystemClock()
    # Ticks wait for the completions already on the broker (phaseflow.agents.backlog).
    backlog = CompletionBacklog(completions_end, wall)

    @ctx.app.agent(channel, name="readiness")  # type: ignore[untyped-decorator]
    async def readiness(stream: Any) -> None:
        # Records are handled in batches: whatever the stream has ready (never waiting for
        # more, so a record arriving alone is handled at once), up to readiness_batch_size.
        # Acknowledged (their offsets committable) only once the batch's table writes are
        # stored, below.
        stream.enable_acks = False
        batch: list[Any] = []
        async for event in stream.events():
            batch.append(event)
            if len(batch) < settings.readiness_batch_size and await _more_ready(stream):
                continue
            fired = await handle_batch(ctx.app, batch, handle_record, batch_tables)
            for handled in batch:
                await stream.ack(handled)
            batch = []
            await prompt_commit.after_batch(stream)
            for trigger in fired:
                metrics.triggers_out.labels(phase=str(trigger.phase), reason=trigger.reason).inc()
                observe_phase_duration(processor, metrics, trigger)

    # Each topic's counter child, looked up once: labels() per record costs more than inc().
    events_in: dict[str, Any] = {}

    async def handle_record(message: Any) -> list[PhaseTrigger]:
        origin = Origin.of(message)
        counter = events_in.get(message.topic)
        if counter is None:
            counter = events_in[message.topic] = metrics.events_in.labels(topic=message.topic)
        counter.inc()
        if message.topic == completions:
            received = (
                record_time(message.timestamp, message.timestamp_type) if on_wall_time else None
            )
            fired = await processor.handle(message.value or b"", origin, record_time=received)
            backlog.processed(message.partition, message.offset)
            return fired
        if backlog.holds(message.partition):
            return []  # the timer sends the tick again (TICK_RESEND_AFTER)
        return await processor.handle_tick(message.value or b"", origin)

    @ctx.app.timer(interval=settings.readiness_tick_seconds)  # type: ignore[untyped-decorator]
    async def deadlines() -> None:
        # Wall clock, not stream time: a deadline fires even if no event ever arrives again.
        sent = await processor.send_due_ticks(ctx.side_publisher)
        if sent:
            log.info("sent %d readiness tick(s)", sent)

    return processor
