"""Wiring of the prediction workers into the app: requests in batches, predictions out.

The requests are consumed by
:class:`~phaseflow.agents.predictions.request_consumer.PredictionRequestConsumer` (its own consumer
group, at least once; the module says why it is not a Faust agent), started with the app (before
its tables are recovered: the workers read none) and stopped on shutdown after the batch in
progress (before the side producer).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from phaseflow.agents.predictions.history import HistoryLoader
from phaseflow.agents.predictions.request_consumer import PredictionRequestConsumer
from phaseflow.agents.predictions.systems import enabled_systems
from phaseflow.agents.predictions.worker import PredictionWorker
from phaseflow.models.events import Prediction
from phaseflow.streams.core.envelope import Origin
from phaseflow.streams.core.faust_early_start import start_with_app

if TYPE_CHECKING:
    from phaseflow.streams.core.features import FeatureContext

log = logging.getLogger(__name__)


def install(
    ctx: FeatureContext, loader: HistoryLoader
) -> tuple[PredictionWorker, PredictionRequestConsumer]:
    """Run the prediction worker over ``{prefix}.prediction-requests`` for the app's lifetime."""
    settings = ctx.settings
    worker = PredictionWorker(
        systems=enabled_systems(ctx.registry),
        features=loader,
        publisher=ctx.side_publisher,
        clock=ctx.clock,
        max_message_bytes=settings.max_message_bytes,
    )

    async def handle_batch(items: Sequence[tuple[bytes, Origin]]) -> list[Prediction]:
        # Returns after every send was acknowledged; only then are the offsets committed.
        predictions = await worker.handle_batch(items)
        spent = worker.stats.last_batch_seconds
        log.info(
            "predicted %d request(s): %d prediction(s); history queries %d, cache hits %d; "
            "seconds: history %.3f, predict %.3f, publish %.3f",
            len(items),
            len(predictions),
            loader.stats.history_queries,
            loader.cache.hits,
            spent.get("history", 0.0),
            spent.get("predict", 0.0),
            spent.get("publish", 0.0),
        )
        return predictions

    requests = PredictionRequestConsumer(settings, handle_batch)

    # With the app, not after table recovery: the workers read no table, so after a restart
    # they predict while the tables are restored.
    start_with_app(ctx.app, requests.run_until_stopped, name="PredictionRequests")

    # Stopped on shutdown before the side producer its batch publishes through.
    ctx.side_publisher_users.append(requests)
    return worker, requests
