"""The features installed in one worker, typed: what the app wiring, the web views and tests
reach them by.

Each feature's ``install(ctx)`` returns what it built; :func:`phaseflow.streams.app.build_app`
fills a :class:`Components` with it. A field is None where the feature is not installed (a
registry without a predictions phase, sinks disabled).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from phaseflow.agents.predictions.coordinator import Coordinator
from phaseflow.agents.predictions.history import HistoryLoader
from phaseflow.agents.predictions.request_consumer import PredictionRequestConsumer
from phaseflow.agents.predictions.worker import PredictionWorker
from phaseflow.agents.readiness import ReadinessProcessor
from phaseflow.sinks.install import PredictionSinkService
from phaseflow.streams.core.metrics import LagSnapshot
from phaseflow.streams.dlq_tracker import DeadLetterTracker
from phaseflow.streams.monitoring.lag import LagMonitor
from phaseflow.streams.monitoring.recent_alerts import RecentAlerts
from phaseflow.streams.notify.install import Notifiers


@dataclass
class Components:
    """One field per feature part; see the module docstring."""

    readiness: ReadinessProcessor | None = None
    coordinator: Coordinator | None = None
    prediction_worker: PredictionWorker | None = None
    prediction_requests: PredictionRequestConsumer | None = None
    history_loader: HistoryLoader | None = None
    prediction_sink: PredictionSinkService | None = None
    audit_sink: PredictionSinkService | None = None
    lag_monitor: LagMonitor | None = None
    #: The own group's lag per (topic, partition) assigned to this worker.
    lag: Callable[[], LagSnapshot] | None = None
    dead_letters: DeadLetterTracker | None = None
    recent_alerts: RecentAlerts | None = None
    #: The alert notifier routes (None: no route configured).
    notifiers: Notifiers | None = None
