"""``install(ctx, state)``: the HTTP API on the app's Faust web server."""

from __future__ import annotations

from phaseflow.streams.core.features import FeatureContext
from phaseflow.streams.recovery_progress import record_finished_recoveries, recovery_state
from phaseflow.streams.web.api import HttpApi
from phaseflow.streams.web.auth import ApiKeys
from phaseflow.streams.web.health import ReadinessCheck, probe_broker
from phaseflow.streams.web.ratelimit import RateLimiter
from phaseflow.streams.web.views import ROUTES
from phaseflow.streams.web.worker_state import WorkerState


def install(ctx: FeatureContext, state: WorkerState) -> HttpApi:
    """Register every endpoint of docs/http-api.md; return the shared :class:`HttpApi`."""
    settings = ctx.settings
    app = ctx.app
    metrics = ctx.metrics

    def assigned_partitions() -> int:
        return len(app.consumer.assignment())

    record_finished_recoveries()
    readiness = ReadinessCheck(
        probe=lambda: probe_broker(settings),
        assigned_partitions=assigned_partitions,
        recovery_pending=lambda: recovery_state(app).pending(),
        lag=state.lag,
        max_lag_messages=settings.lag_ready_max_messages,
        # A notifier that cannot deliver (wrong URL or key) makes the worker not ready.
        problems=state.notifier_problems,
        metrics=metrics,
    )
    api = HttpApi(
        ctx,
        state,
        keys=ApiKeys(settings.api_keys),
        limiter=RateLimiter(settings.web_rate_limit_per_minute),
        metrics=metrics,
        readiness=readiness,
    )
    metrics.set_lag_source(lambda: state.lag() or {})
    metrics.set_table_source(lambda: {name: len(table) for name, table in app.tables.items()})
    for path, view in ROUTES:
        # One subclass per app, so two apps in one process never share an HttpApi.
        bound = type(view.__name__, (view,), {"api": api})
        app.page(path, name=view.__name__)(bound)
    return api
