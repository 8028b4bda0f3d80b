"""The prediction path (docs/predictions.md): coordinator, workers, systems, history loading.

``install(ctx)`` is the app feature: it wires the coordinator, the trigger listener and the
workers into the Faust app, sharing one lazily built BigQuery client, and returns what it built
(:class:`~phaseflow.agents.predictions.wiring.PredictionFeature`). Everything else in this package
runs without Faust (unit tests, benchmarks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phaseflow.agents.predictions.wiring import PredictionFeature
    from phaseflow.streams.core.features import FeatureContext


def install(ctx: FeatureContext) -> PredictionFeature | None:
    """Install the coordinator, the trigger listener and the prediction workers; None for a
    registry without a predictions phase."""
    from phaseflow.agents.predictions import coordinator_agent, trigger_listener, worker_agent  # noqa: PLC0415
    from phaseflow.agents.predictions.wiring import (  # noqa: PLC0415
        LazyBigQuery,
        PredictionFeature,
        history_loader,
        query_runner,
        slate_source,
    )

    if not ctx.registry.has_phase(5):
        return None  # a registry without a predictions phase (e.g. a test pipeline)
    settings = ctx.settings
    bigquery = LazyBigQuery(settings)
    runner = query_runner(settings, bigquery)
    coordinator = coordinator_agent.install(ctx, slate_source(settings, runner))
    trigger_listener.install(ctx)
    loader = history_loader(settings, runner, ctx.clock)
    worker, requests = worker_agent.install(ctx, loader)

    @ctx.app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def _close_bigquery(_sender: Any, **_: Any) -> None:
        bigquery.close()

    return PredictionFeature(
        coordinator=coordinator,
        worker=worker,
        requests=requests,
        history_loader=loader,
    )
