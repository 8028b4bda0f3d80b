"""The readiness agent: completions and timer ticks from Kafka into ``ReadinessProcessor``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import faust

from agents.envelope import Origin
from agents.readiness import ReadinessProcessor
from streams.topics import TopicName

if TYPE_CHECKING:
    from streams.app import AppContext

log = logging.getLogger(__name__)


def install(ctx: AppContext) -> ReadinessProcessor:
    """Declare the readiness table, agent and deadline timer on ``ctx.app``."""
    settings = ctx.settings
    table = ctx.app.Table(
        "readiness",
        default=None,
        partitions=settings.topic_partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="orjson"),
        help="Per (game_date, phase) readiness: processors seen, dedup ids, trigger ledger.",
    )
    processor = ReadinessProcessor(
        registry=ctx.registry,
        table=table,
        publisher=ctx.publisher,
        clock=ctx.clock,
        pipeline_timezone=settings.pipeline_timezone,
        max_message_bytes=settings.max_message_bytes,
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
        partitions=settings.topic_partitions,
    )

    @ctx.app.agent(channel, name="readiness")  # type: ignore[untyped-decorator]
    async def readiness(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            origin = Origin(message.topic, message.partition, message.offset, message.key)
            if message.topic == completions:
                await processor.handle(message.value or b"", origin)
            else:
                await processor.handle_tick(message.value or b"", origin)

    @ctx.app.timer(interval=settings.readiness_tick_seconds)  # type: ignore[untyped-decorator]
    async def deadlines() -> None:
        # Wall clock, not stream time: a deadline fires even if no event ever arrives again.
        sent = await processor.send_due_ticks(ctx.side_publisher)
        if sent:
            log.info("sent %d readiness tick(s)", sent)

    ctx.components["readiness"] = processor
    return processor
