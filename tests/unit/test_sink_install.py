"""The sink feature without a broker: when it runs, start retries, stop, Prometheus wiring."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from phaseflow.sinks.install import PredictionSinkService, prometheus_sink_metrics, sink_enabled
from phaseflow.sinks.predictions_consumer import PredictionSinkRunner
from phaseflow.streams.core.metrics import Metrics
from phaseflow.streams.core.settings import Settings


def test_enabled_by_endpoint_unless_set_explicitly() -> None:
    assert not sink_enabled(Settings())  # no credential lookup on a dev machine
    assert sink_enabled(Settings(bigquery_endpoint="http://127.0.0.1:9050"))
    assert sink_enabled(Settings(sink_enabled=True))  # Google's API
    assert not sink_enabled(Settings(bigquery_endpoint="http://x", sink_enabled=False))


def test_sink_metrics_feed_the_prometheus_series() -> None:
    metrics = Metrics()
    sink = prometheus_sink_metrics(metrics)
    sink.record_flush(500, 0.2)
    sink.record_retry(RuntimeError("503"))
    sink.record_failure(RuntimeError("down"))
    sink.record_dead_letter("invalid")
    text = metrics.render().decode()
    assert 'phaseflow_sink_flushes_total{outcome="ok",sink="bigquery_predictions"} 1.0' in text
    assert 'phaseflow_sink_flushes_total{outcome="retry",sink="bigquery_predictions"} 1.0' in text
    assert 'phaseflow_sink_flushes_total{outcome="failed",sink="bigquery_predictions"} 1.0' in text
    assert 'phaseflow_sink_flush_seconds_count{sink="bigquery_predictions"} 1.0' in text
    assert 'phaseflow_dead_letters_total{error_type="bigquery_rejected"} 1.0' in text
    assert sink.rows_written == 500


class _FakeRunner:
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.started = False
        self.stopped = False
        self.topic = "p.predictions"
        self.group_id = "g"
        self.records_consumed = 0
        self.commits = 0

    async def start(self) -> None:
        if self.fail:
            raise ConnectionError("BigQuery unreachable")
        self.started = True

    async def stop(self) -> None:
        self.stopped = True


async def test_start_failures_are_retried_and_stop_flushes_the_runner() -> None:
    made: list[_FakeRunner] = []

    def factory() -> PredictionSinkRunner:
        made.append(_FakeRunner(fail=len(made) < 2))
        return cast(PredictionSinkRunner, made[-1])

    service = PredictionSinkService(
        Settings(), runner_factory=factory, first_retry_seconds=0.01, max_retry_seconds=0.02
    )
    task = asyncio.create_task(service.run())
    await asyncio.wait_for(service.running.wait(), timeout=5)
    assert service.start_failures == 2
    assert [r.started for r in made] == [False, False, True]
    await service.stop()
    await asyncio.wait_for(task, timeout=5)
    assert made[-1].stopped
    await service.stop()  # idempotent


async def test_stop_while_retrying_ends_the_loop() -> None:
    def factory() -> Any:
        return _FakeRunner(fail=True)

    service = PredictionSinkService(Settings(), runner_factory=factory, first_retry_seconds=60)
    task = asyncio.create_task(service.run())
    await asyncio.sleep(0.05)
    await service.stop()
    await asyncio.wait_for(task, timeout=5)
    assert service.start_failures == 1
    assert not service.running.is_set()


class _HangingRunner(_FakeRunner):
    """A start that would retry an unreachable BigQuery for minutes."""

    def __init__(self) -> None:
        super().__init__(fail=False)
        self.cancelled = False

    async def start(self) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_stop_does_not_wait_for_a_hanging_start() -> None:
    runner = _HangingRunner()
    service = PredictionSinkService(Settings(), runner_factory=lambda: cast(Any, runner))
    task = asyncio.create_task(service.run())
    await asyncio.sleep(0.05)
    await service.stop()
    await asyncio.wait_for(task, timeout=2)
    assert runner.cancelled
    assert not service.running.is_set()
