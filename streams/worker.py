"""Running the service: ``phaseflow worker``."""

from __future__ import annotations

import asyncio
import logging

import faust

from streams.app import build_app
from streams.recovery_progress import when_tables_recovered
from streams.settings import Settings
from streams.topics import ensure_topics

log = logging.getLogger(__name__)

# Printed once the worker owns its partitions and has replayed its tables (after every
# rebalance, when /ready stops naming recovery); test harnesses and the demo wait for it instead
# of sleeping.
READY_LINE = "phaseflow worker ready"


def run_worker(settings: Settings) -> None:
    """Create missing topics, then run the Faust worker until SIGINT/SIGTERM."""
    asyncio.run(ensure_topics(settings))
    built = build_app(settings)
    app = built.app

    def _announce(_generation: int) -> None:
        assigned = len(app.consumer.assignment())
        # print, not log: the line must reach stdout whatever the log configuration.
        print(f"{READY_LINE} partitions={assigned}", flush=True)  # noqa: T201

    when_tables_recovered(app, _announce)

    worker = faust.Worker(
        app,
        loglevel=settings.log_level.lower(),
        quiet=True,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
