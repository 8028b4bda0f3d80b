"""What every feature of the app (agents, sinks, monitoring, web) is built from.

A feature's ``install(ctx)`` declares its Faust agents, tables and tasks on ``ctx.app`` and
returns what it built, typed; the app wiring (``phaseflow.streams.app``) keeps those in its
:class:`~phaseflow.streams.components.Components`. Features therefore never reach each other
through the context: agents and sinks meet only through topics and models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from phaseflow.streams.core.clock import Clock
from phaseflow.streams.core.lifecycle import AsyncService
from phaseflow.streams.core.metrics import Metrics
from phaseflow.streams.core.publisher import Publisher
from phaseflow.streams.core.registry import Registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.side_producer import SideProducer
from phaseflow.streams.core.topics import TopicName


@dataclass
class FeatureContext:
    """The app and the ground floor's services, shared by every feature."""

    app: Any  # faust.App: untyped upstream
    settings: Settings
    registry: Registry
    clock: Clock
    topics: dict[TopicName, Any]
    #: Sends from stream processing: part of the consumed record's transaction (exactly_once).
    publisher: Publisher
    #: Sends from timers and HTTP handlers (see phaseflow.streams.core.side_producer for why they
    #: differ).
    side_publisher: SideProducer
    #: The app's Prometheus series (one registry per app, never the process-global one).
    metrics: Metrics = field(default_factory=Metrics)
    #: Services that publish through ``side_publisher``: stopped (their work finished) before it.
    side_publisher_users: list[AsyncService] = field(default_factory=list)
