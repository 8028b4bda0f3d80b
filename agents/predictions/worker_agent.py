"""Faust wiring of the prediction workers: requests in batches, predictions out."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from agents.envelope import Origin
from agents.predictions.history import HistoryLoader
from agents.predictions.systems import enabled_systems
from agents.predictions.worker import PredictionWorker
from streams.topics import TopicName
from streams.web.collectors import PredictionSystemCollector
from streams.web.metrics import metrics_for

if TYPE_CHECKING:
    from streams.app import AppContext

log = logging.getLogger(__name__)


def install(ctx: AppContext, loader: HistoryLoader) -> PredictionWorker:
    """Declare the worker agent on ``{prefix}.prediction-requests``."""
    settings = ctx.settings
    worker = PredictionWorker(
        systems=enabled_systems(ctx.registry),
        features=loader,
        # Predictions and "done" records go to other topics' partitions: under exactly_once
        # the app's producer would park them in those partitions' transactions.
        publisher=ctx.side_publisher,
        clock=ctx.clock,
        max_message_bytes=settings.max_message_bytes,
    )

    @ctx.app.agent(ctx.topics[TopicName.PREDICTION_REQUESTS], name="prediction_worker")  # type: ignore[untyped-decorator]
    async def predict(stream: Any) -> None:
        async for events in stream.take_events(
            settings.prediction_batch_size, within=settings.prediction_batch_wait_seconds
        ):
            items = [
                (
                    event.message.value or b"",
                    Origin(
                        event.message.topic,
                        event.message.partition,
                        event.message.offset,
                        event.message.key,
                    ),
                )
                for event in events
            ]
            # Returns after every send was acknowledged; only then are the offsets acked.
            predictions = await worker.handle_batch(items)
            log.info(
                "predicted %d request(s): %d prediction(s); history queries %d, cache hits %d",
                len(items),
                len(predictions),
                loader.stats.history_queries,
                loader.cache.hits,
            )

    metrics_for(ctx).registry.register(PredictionSystemCollector(lambda: worker.stats.systems))
    ctx.components["prediction_worker"] = worker
    ctx.components["history_loader"] = loader
    return worker
