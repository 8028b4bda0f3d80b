"""Running the service: ``phaseflow worker``."""

from __future__ import annotations

import asyncio
import logging
import sys

import faust

from phaseflow.streams.app import build_app
from phaseflow.streams.broker_probe import BrokerProbeError, probe_broker
from phaseflow.streams.core.deployment import identity_line
from phaseflow.streams.core.log_repeats import collapse_repeats_on_root
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.delivery import Delivery, DeliverySettingError, resolve_delivery
from phaseflow.streams.faust_changelogs import ChangelogTopicsError, ensure_changelog_topics
from phaseflow.streams.recovery_progress import when_tables_recovered
from phaseflow.streams.worker_gc import tune_garbage_collection
from phaseflow.streams.worker_identity import worker_id_problem

log = logging.getLogger(__name__)

# Printed once the worker owns its partitions and has replayed its tables (after every
# rebalance, when /ready stops naming recovery); test harnesses and the demo wait for it instead
# of sleeping.
READY_LINE = "phaseflow worker ready"
#: Exit status for a setting the broker cannot honour (as for other configuration errors).
EXIT_BAD_SETTING = 2
#: Exit status when the broker could not be asked at all.
EXIT_BROKER_UNAVAILABLE = 1


def _fail(message: str, status: int) -> None:
    print(f"phaseflow: error: {message}", file=sys.stderr, flush=True)  # noqa: T201
    raise SystemExit(status)


async def delivery_for(settings: Settings) -> Delivery:
    """Ask the broker what it supports and resolve the ``auto`` settings against it."""
    return resolve_delivery(settings, await probe_broker(settings))


def without_spinner(worker: faust.Worker) -> None:
    """No terminal spinner. At a log level of WARNING or above Faust's worker sets the root
    logger to DEBUG so that its spinner turns on every record: every debug line of aiokafka and
    Faust (several per fetch, produce and record) is then built and handled only to be dropped
    by the WARNING handler, ~5 % of a busy worker's time in a profile. A supervised service has
    no terminal to spin on."""
    worker.spinner = None


def collapse_repeated_library_logs(worker: faust.Worker, window_seconds: float) -> None:
    """Faust's worker sets up its own log handlers when it starts; the repeat filter goes on
    them as soon as they exist (phaseflow.streams.core.log_repeats)."""
    set_up = worker.on_setup_root_logger

    def on_setup_root_logger(logger: logging.Logger, level: int) -> None:
        set_up(logger, level)
        collapse_repeats_on_root(window_seconds)

    worker.on_setup_root_logger = on_setup_root_logger  # type: ignore[method-assign]


def run_worker(settings: Settings) -> None:
    """Ask the broker what it supports, create missing topics, then run the Faust worker until
    SIGINT/SIGTERM. A setting the broker cannot honour exits 2 with one line naming it, before
    anything is created."""
    log.info("%s", identity_line(settings))
    try:
        delivery = asyncio.run(delivery_for(settings))
    except DeliverySettingError as error:
        _fail(str(error), EXIT_BAD_SETTING)
        return
    except BrokerProbeError as error:
        _fail(str(error), EXIT_BROKER_UNAVAILABLE)
        return
    resolved = delivery.settings
    taken = asyncio.run(worker_id_problem(resolved)) if resolved.kafka_static_membership else None
    if taken is not None:
        _fail(taken, EXIT_BAD_SETTING)
        return
    # After the probe: a setting the broker cannot honour leaves nothing behind on the cluster.
    asyncio.run(ensure_topics(resolved))
    log.info(
        "processing guarantee %s, idempotent producers %s (%s)",
        resolved.processing_guarantee,
        "on" if resolved.idempotent_producer else "off",
        delivery.reason,
    )
    built = build_app(resolved, delivery=delivery)
    app = built.app
    try:
        # Before the consumer joins: the group's assignment must name every changelog.
        asyncio.run(ensure_changelog_topics(resolved, app))
    except ChangelogTopicsError as error:
        _fail(str(error), EXIT_BROKER_UNAVAILABLE)
        return

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
    without_spinner(worker)
    collapse_repeated_library_logs(worker, settings.log_repeat_window_seconds)
    tune_garbage_collection()
    worker.execute_from_commandline()
