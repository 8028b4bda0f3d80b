"""Faust wiring of the coordinator: the progress agent, its tables and the stall timer."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import faust

from phaseflow.agents.predictions.coordinator import Coordinator
from phaseflow.agents.predictions.source import SlateSource
from phaseflow.streams.core.envelope import Origin
from phaseflow.streams.core.topics import TopicName

if TYPE_CHECKING:
    from phaseflow.streams.core.features import FeatureContext

log = logging.getLogger(__name__)


def install(ctx: FeatureContext, source: SlateSource) -> Coordinator:
    """Declare the batch tables, the progress agent and the timer; expose the coordinator."""
    settings = ctx.settings
    schema: Any = faust.Schema(key_serializer="json", value_serializer="orjson")
    batches = ctx.app.Table(
        "prediction_batches",
        default=None,
        partitions=settings.kafka_topic_partitions,
        schema=schema,
        help="Per game_date: the prediction batch (running/complete), its progress, command ids.",
    )
    players = ctx.app.Table(
        "prediction_batch_players",
        default=None,
        partitions=settings.kafka_topic_partitions,
        schema=schema,
        help="Per (game_date, batch_id, player): predictions reported done (dedups re-sends).",
    )
    coordinator = Coordinator(
        registry=ctx.registry,
        batches=batches,
        players=players,
        # Requests, completions and alerts go to other partitions than the record being
        # processed; under exactly_once they would wait in another partition's transaction.
        publisher=ctx.side_publisher,
        source=source,
        clock=ctx.clock,
        max_message_bytes=settings.max_message_bytes,
        batch_deadline=timedelta(seconds=settings.prediction_batch_deadline_seconds),
    )

    @ctx.app.agent(ctx.topics[TopicName.PREDICTION_PROGRESS], name="prediction_coordinator")  # type: ignore[untyped-decorator]
    async def progress(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            origin = Origin.of(message)
            await coordinator.handle(message.value or b"", origin)

    @ctx.app.timer(interval=settings.prediction_coordinator_tick_seconds)  # type: ignore[untyped-decorator]
    async def stalled_batches() -> None:
        sent = await coordinator.send_due_checks()
        if sent:
            log.debug("sent %d coordinator check(s)", sent)

    return coordinator
