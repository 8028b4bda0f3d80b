"""``install(ctx)``: the BigQuery prediction sink (and the audit trail's, the same way, see
:mod:`phaseflow.sinks.bigquery_audit`) runs inside the worker.

The feature starts a :class:`~phaseflow.sinks.predictions_consumer.PredictionSinkRunner` (its own
consumer group, commits only after the MERGE) once the app has started, and stops it on
``app.on_before_shutdown`` (SIGTERM/SIGINT): the runner stops consuming, flushes what it buffered,
commits those offsets and closes. A runner that cannot start (broker or BigQuery unreachable,
no credentials, a missing permission) is logged and retried with a backoff (1 s doubling to 60 s);
the worker itself keeps running its other agents, so a worker without BigQuery access does not
crash-loop. ``GET /status`` shows each sink's problem (:meth:`PredictionSinkService.health`).

Enabled by ``PHASEFLOW_SINK_ENABLED``; unset, only when ``PHASEFLOW_BIGQUERY_ENDPOINT`` is set
(the emulator), so a dev or CI worker never looks up Google credentials. Flushes, retries,
failures and BigQuery-rejected rows feed the app's Prometheus series (``ctx.metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from phaseflow.sinks.base import SinkMetrics
from phaseflow.sinks.bigquery_audit import audit_sink_runner
from phaseflow.sinks.predictions_consumer import PredictionSinkRunner, SinkRunner
from phaseflow.streams.core.bigquery_errors import describe_bigquery_error
from phaseflow.streams.core.metrics import Metrics
from phaseflow.streams.core.settings import Settings

if TYPE_CHECKING:
    from phaseflow.streams.core.features import FeatureContext

log = logging.getLogger(__name__)

#: The ``sink`` label of this sink's Prometheus series.
SINK_LABEL: Final = "bigquery_predictions"
AUDIT_SINK_LABEL: Final = "bigquery_audit"


def sink_enabled(settings: Settings) -> bool:
    """``PHASEFLOW_SINK_ENABLED`` if set, else whether an emulator endpoint is configured."""
    if settings.sink_enabled is not None:
        return settings.sink_enabled
    return bool(settings.bigquery_endpoint)


def prometheus_sink_metrics(metrics: Metrics, sink: str = SINK_LABEL) -> SinkMetrics:
    """A :class:`SinkMetrics` whose callbacks update the app's Prometheus series."""

    def on_flush(rows: int, seconds: float) -> None:
        del rows
        metrics.sink_flushes.labels(sink=sink, outcome="ok").inc()
        metrics.sink_flush_seconds.labels(sink=sink).observe(seconds)

    def on_retry(exc: BaseException) -> None:
        del exc
        metrics.sink_flushes.labels(sink=sink, outcome="retry").inc()

    def on_failure(exc: BaseException) -> None:
        del exc
        metrics.sink_flushes.labels(sink=sink, outcome="failed").inc()

    def on_dead_letter(reason: str) -> None:
        del reason
        metrics.dead_letters.labels(error_type="bigquery_rejected").inc()

    sink_metrics = SinkMetrics(
        on_flush=on_flush, on_failure=on_failure, on_retry=on_retry, on_dead_letter=on_dead_letter
    )
    # Read at each scrape, not copied: every runner's sink re-binds ``oldest_unwritten_age``.
    metrics.sink_oldest_unwritten.labels(sink=sink).set_function(
        lambda: sink_metrics.oldest_unwritten_age() or 0.0
    )
    return sink_metrics


class PredictionSinkService:
    """Keeps one runner alive for the worker's lifetime; see the module docstring. The
    predictions' by default; ``runner_factory`` and ``name`` make it another sink's (audit)."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: SinkMetrics | None = None,
        runner_factory: Callable[[], SinkRunner[Any]] | None = None,
        first_retry_seconds: float = 1.0,
        max_retry_seconds: float = 60.0,
        name: str = "prediction sink",
    ) -> None:
        self.settings = settings
        self.name = name
        self.metrics = metrics or SinkMetrics()
        self._factory = runner_factory or self._default_runner
        self._first_retry = first_retry_seconds
        self._max_retry = max_retry_seconds
        self._stopping = asyncio.Event()
        self.running = asyncio.Event()
        self.runner: SinkRunner[Any] | None = None
        #: The runner being started (its setup may retry BigQuery for a minute).
        self._starting: SinkRunner[Any] | None = None
        self.start_failures = 0
        self.start_error: str | None = None

    def _default_runner(self) -> PredictionSinkRunner:
        settings = self.settings
        return PredictionSinkRunner(
            settings,
            metrics=self.metrics,
            session_timeout_ms=int(settings.kafka_session_timeout_seconds * 1000),
            heartbeat_interval_ms=int(settings.kafka_heartbeat_interval_seconds * 1000),
        )

    async def run(self) -> None:
        """Start the runner, retrying until it starts or :meth:`stop` is called; then wait."""
        delay = self._first_retry
        while not self._stopping.is_set():
            try:
                # Building the BigQuery client may look up credentials (blocking I/O).
                runner = await asyncio.to_thread(self._factory)
                self._starting = runner
                if not await self._start_unless_stopped(runner):
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 -- any start failure is retried
                starting, self._starting = self._starting, None
                self.start_failures += 1
                self.start_error = (
                    starting.sink.describe_error(exc)
                    if starting is not None
                    else describe_bigquery_error(exc, self.settings.bigquery_endpoint)
                )
                log.warning(
                    "%s could not start (%s); retrying in %.0f s",
                    self.name,
                    self.start_error,
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                delay = min(self._max_retry, delay * 2)
                continue
            self.runner, self._starting = runner, None
            self.start_error = None
            runner.sink.last_error = None  # the setup's retried calls succeeded in the end
            self.running.set()
            log.info("%s consuming %s as %s", self.name, runner.topic, runner.group_id)
            await self._stopping.wait()
            return

    async def _start_unless_stopped(self, runner: SinkRunner[Any]) -> bool:
        """Start ``runner``; False if :meth:`stop` came first (a start against an unreachable
        BigQuery can take minutes of bounded retries; shutdown must not wait for them)."""
        starting = asyncio.ensure_future(runner.start())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not starting.done():
            starting.cancel()  # the runner closes what it had started
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await starting
            return False
        starting.result()  # raises the start failure
        if self._stopping.is_set():  # started just as stop() came
            await runner.stop()
            return False
        return True

    def health(self) -> dict[str, object]:
        """This sink in ``GET /status``: whether it runs, what it holds unwritten, and why it
        cannot start or write (a missing permission, an unreachable BigQuery), or None."""
        runner = self.runner
        if runner is None:
            starting = self._starting
            retried = starting.sink.last_error if starting is not None else None
            problem = f"starting: {retried}" if retried is not None else self.start_error
            return {"running": False, "buffered": 0, "problem": problem}
        return {
            "running": True,
            "buffered": runner.sink.buffered,
            "problem": runner.sink.last_error,
        }

    async def stop(self) -> None:
        """Stop consuming, flush, commit what was merged, close. Idempotent."""
        self._stopping.set()
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.stop()
            log.info(
                "%s stopped: %d record(s) consumed, %d row(s) written, %d commit(s)",
                self.name,
                runner.records_consumed,
                self.metrics.rows_written,
                runner.commits,
            )


@dataclass(frozen=True)
class SinkServices:
    """The sinks :func:`install` runs with the app."""

    predictions: PredictionSinkService
    audit: PredictionSinkService


def install(ctx: FeatureContext) -> SinkServices | None:
    """Run the prediction sink and the audit sink with the app (when enabled)."""
    settings = ctx.settings
    if not sink_enabled(settings):
        log.info("BigQuery sinks disabled (no BigQuery endpoint and PHASEFLOW_SINK_ENABLED unset)")
        return None
    metrics = ctx.metrics
    service = PredictionSinkService(settings, metrics=prometheus_sink_metrics(metrics))
    _run_with_app(ctx, service)
    audit_metrics = prometheus_sink_metrics(metrics, AUDIT_SINK_LABEL)
    audit = PredictionSinkService(
        settings,
        metrics=audit_metrics,
        runner_factory=lambda: audit_sink_runner(settings, metrics=audit_metrics),
        name="audit sink",
    )
    _run_with_app(ctx, audit)
    return SinkServices(predictions=service, audit=audit)


def _run_with_app(ctx: FeatureContext, service: PredictionSinkService) -> None:
    @ctx.app.task  # type: ignore[untyped-decorator]
    async def run_sink() -> None:
        await service.run()

    # Before the app's producers close; the runner has its own consumer and producer.
    @ctx.app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def _stop_sink(_sender: Any, **_: Any) -> None:
        await service.stop()
