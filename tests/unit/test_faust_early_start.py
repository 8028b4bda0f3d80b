"""start_with_app: work that reads no table runs while the app still waits for table recovery."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mode import Service

from phaseflow.agents.predictions.request_consumer import PredictionRequestConsumer
from phaseflow.streams.app import build_app
from phaseflow.streams.core.faust_early_start import start_with_app
from phaseflow.streams.core.settings import Settings


class AppWaitingForRecovery(Service):
    """Like Faust's App: ``on_started`` (where ``@app.task`` functions start) waits for the
    tables to be recovered."""

    def __init__(self) -> None:
        super().__init__()
        self.recovered = asyncio.Event()
        self.tasks_started = False

    async def on_started(self) -> None:
        await self.recovered.wait()
        self.tasks_started = True


async def test_the_work_runs_while_the_app_still_waits_for_table_recovery() -> None:
    app = AppWaitingForRecovery()
    ran = asyncio.Event()

    async def run() -> None:
        ran.set()

    start_with_app(app, run, name="Early")
    starting = asyncio.create_task(app.start())
    try:
        await asyncio.wait_for(ran.wait(), 5)
        assert not app.tasks_started  # still "recovering", and the work already ran
    finally:
        app.recovered.set()
        await starting
        await app.stop()
    assert app.tasks_started


async def test_stopping_the_app_cancels_work_still_running() -> None:
    app = AppWaitingForRecovery()
    app.recovered.set()
    entered, cancelled = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    start_with_app(app, run, name="Early")
    await app.start()
    await asyncio.wait_for(entered.wait(), 5)
    await app.stop()
    assert cancelled.is_set()


def test_the_prediction_workers_start_with_the_app_not_as_an_app_task(tmp_path: Path) -> None:
    ctx = build_app(Settings(topic_prefix="pf", app_id="pf-app", data_dir=tmp_path))
    requests = ctx.components.prediction_requests
    assert isinstance(requests, PredictionRequestConsumer)
    early = [child for child in ctx.app._children if child.shortlabel == "PredictionRequests"]
    assert len(early) == 1
    assert early[0]._run == requests.run_until_stopped
    # Not also an app task (those start only after table recovery).
    assert all("prediction_requests" not in task.__qualname__ for task in ctx.app._app_tasks)
