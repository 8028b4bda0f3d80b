"""The prediction path (docs/predictions.md): coordinator, workers, systems, history loading.

``install(ctx)`` is the app feature: it wires the coordinator (``ctx.components["coordinator"]``),
the trigger listener and the workers into the Faust app, sharing one lazily built BigQuery client.
Everything else in this package runs without Faust (unit tests, benchmarks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phaseflow.streams.app import AppContext


def install(ctx: AppContext) -> None:
    """Install the coordinator, the trigger listener and the prediction workers."""
    from phaseflow.agents.predictions import coordinator_agent, trigger_listener, worker_agent  # noqa: PLC0415
    from phaseflow.agents.predictions.wiring import (  # noqa: PLC0415
        LazyBigQuery,
        history_loader,
        query_runner,
        slate_source,
    )

    if not ctx.registry.has_phase(5):
        return  # a registry without a predictions phase (e.g. a test pipeline) has no coordinator
    settings = ctx.settings
    bigquery = LazyBigQuery(settings)
    runner = query_runner(settings, bigquery)
    coordinator_agent.install(ctx, slate_source(settings, runner))
    trigger_listener.install(ctx)
    worker_agent.install(ctx, history_loader(settings, runner, ctx.clock))
    ctx.components["prediction_queries"] = runner

    @ctx.app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def _close_bigquery(_sender: Any, **_: Any) -> None:
        bigquery.close()
