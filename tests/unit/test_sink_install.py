"""The sink feature without a broker: when it runs, start retries, stop, Prometheus wiring."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from phaseflow.sinks.base import Batch, BufferedSink
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


class _SetupRetrying(BufferedSink[int]):
    """A sink whose setup has BigQuery calls failing and retried until ``reachable`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.reachable = asyncio.Event()
        self.attempted = asyncio.Event()

    async def setup(self) -> None:
        # One failed call, then the retry that succeeds once BigQuery is reachable.
        self.note_retry(ConnectionError("BigQuery at http://127.0.0.1:1 refused"))
        self.attempted.set()
        await self.reachable.wait()

    async def write_batch(self, batch: Batch[int]) -> None:
        raise AssertionError(f"nothing is written here ({len(batch.entries)} rows)")


class _FakeRunner:
    def __init__(self, fail: bool) -> None:
        self.sink: BufferedSink[int] = _SetupRetrying()
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


class _SinkStartingRunner(_FakeRunner):
    """A runner whose start is its sink's setup (as PredictionSinkRunner's is)."""

    async def start(self) -> None:
        await self.sink.start()
        self.started = True

    async def stop(self) -> None:
        await self.sink.stop()
        await super().stop()


async def test_status_shows_why_a_starting_sink_is_not_running_yet() -> None:
    """While the sink's setup retries an unreachable BigQuery (a minute of retries before the
    start fails), ``GET /status`` says why it does not run instead of nothing."""
    runner = _SinkStartingRunner(fail=False)
    sink = cast(_SetupRetrying, runner.sink)
    service = PredictionSinkService(Settings(), runner_factory=lambda: cast(Any, runner))
    task = asyncio.create_task(service.run())
    await asyncio.wait_for(sink.attempted.wait(), timeout=5)
    assert service.health() == {
        "running": False,
        "buffered": 0,
        "problem": ("starting: ConnectionError: BigQuery at http://127.0.0.1:1 refused (retrying)"),
    }
    assert sink.metrics.retries >= 1
    sink.reachable.set()
    await asyncio.wait_for(service.running.wait(), timeout=5)
    assert service.health() == {"running": True, "buffered": 0, "problem": None}
    await service.stop()
    await asyncio.wait_for(task, timeout=5)
