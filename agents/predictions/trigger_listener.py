"""Starts prediction batches from phase-5 triggers and from rerun requests of the coordinator.

A plain consumer with its own group rather than a Faust agent: subscribing the app's group to
``phase-triggers`` would put the readiness agent's trigger sends into another partition's
transaction under ``exactly_once`` (Faust picks the transactional producer by the target
partition of any topic the group consumes), where they could wait indefinitely. Each trigger
becomes a ``start`` command on the progress topic with an id derived from the trigger id (or the
rerun request id), so a re-read trigger is recognised by the coordinator.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from phaseflow.agents.predictions.batch_state import PHASE, PROCESSOR
from phaseflow.agents.predictions.messages import CoordinatorCommand, make_command, stable_id
from phaseflow.models.codec import EventDecodeError, decode, encode
from phaseflow.models.events import PhaseTrigger, RerunRequest
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.clock import Clock
from phaseflow.streams.core.topics import TopicName

if TYPE_CHECKING:
    from phaseflow.streams.core.features import FeatureContext

log = logging.getLogger(__name__)


def command_for(
    topic: TopicName, raw: bytes, clock: Clock, retention: timedelta
) -> CoordinatorCommand | None:
    """The start command a trigger or rerun request asks for, or None (not ours, stale or bad).

    Staleness is the age of the *record* (``triggered_at`` / ``requested_at``), never the age of
    its game date: a backfill of a date older than ``retention_days`` is published now and runs;
    what is skipped is history replayed from the compacted triggers topic by a fresh consumer
    group, and that skip is logged.
    """
    now = clock.now()
    try:
        if topic == TopicName.PHASE_TRIGGERS:
            trigger = decode(PhaseTrigger, raw)
            if trigger.phase != PHASE or _stale(
                trigger.triggered_at, now, retention, f"trigger {trigger.trigger_id}"
            ):
                return None
            return make_command(
                "start",
                trigger.game_date,
                issued_at=now,
                source="trigger",
                requested_by=f"trigger:{trigger.reason}",
                command=stable_id("trigger", trigger.trigger_id),
            )
        rerun = decode(RerunRequest, raw)
    except EventDecodeError as error:
        # Not this listener's to dead-letter: the topic's producers are phaseflow's own agents.
        log.warning("ignored an unreadable record on %s: %s", topic, error.reason)
        return None
    if rerun.processor_name != PROCESSOR or _stale(
        rerun.requested_at, now, retention, f"rerun request {rerun.request_id}"
    ):
        return None
    return make_command(
        "start",
        rerun.game_date,
        issued_at=now,
        source="rerun",
        requested_by=f"rerun:{rerun.reason}",
        command=stable_id("rerun", rerun.request_id),
    )


def _stale(published_at: datetime, now: datetime, retention: timedelta, what: str) -> bool:
    """Published longer than ``retention`` ago: a replay of history, not a request to act on."""
    if now - published_at <= retention:
        return False
    log.info(
        "skipped %s: published %s, more than retention_days (%d) ago",
        what,
        published_at.isoformat(),
        retention.days,
    )
    return True


def install(ctx: FeatureContext) -> None:
    """Run the listener as an app task for as long as the worker runs."""
    settings = ctx.settings
    names = {settings.topic(t): t for t in (TopicName.PHASE_TRIGGERS, TopicName.RERUN_REQUESTS)}
    retention = timedelta(days=ctx.registry.retention_days)

    @ctx.app.task  # type: ignore[untyped-decorator]
    async def prediction_triggers() -> None:
        consumer = await _started_consumer(
            lambda: kafka_clients.consumer(
                settings,
                *names,
                group_id=f"{settings.app_id}-prediction-triggers",
                group_instance_id=settings.group_instance_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                session_timeout_ms=int(settings.kafka_session_timeout_seconds * 1000),
                heartbeat_interval_ms=int(settings.kafka_heartbeat_interval_seconds * 1000),
            )
        )
        try:
            while True:
                batches: dict[Any, list[Any]] = await consumer.getmany(timeout_ms=1000)
                for tp, records in batches.items():
                    for record in records:
                        command = command_for(
                            names[tp.topic], record.value or b"", ctx.clock, retention
                        )
                        if command is not None:
                            await ctx.side_publisher.send(
                                TopicName.PREDICTION_PROGRESS, command.key, encode(command)
                            )
                            log.info(
                                "phase 5 of %s requested by %s",
                                command.game_date,
                                command.requested_by,
                            )
                if batches:
                    await consumer.commit()
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()


async def _started_consumer(make: Callable[[], AIOKafkaConsumer]) -> AIOKafkaConsumer:
    """A started consumer; a broker that is down at start-up must not crash the worker, so
    this waits for it (a fresh consumer per attempt: a failed start leaves one half-built)."""
    while True:
        consumer = make()
        try:
            await consumer.start()
        except KafkaError as error:
            log.warning("prediction trigger listener cannot reach the broker (%s)", error)
            with contextlib.suppress(Exception):
                await consumer.stop()
            await asyncio.sleep(5)
        else:
            return consumer
