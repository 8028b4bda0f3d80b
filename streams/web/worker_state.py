"""The views' one way into what this worker holds: typed and read-only, never a Faust table.

Built on the app's :class:`~phaseflow.streams.components.Components`; a part that is not
installed in this worker reads as None (the view answers 503 or leaves its section empty).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, Protocol

from pydantic import JsonValue

from phaseflow.streams.components import Components
from phaseflow.streams.core.deployment import identity_summary
from phaseflow.streams.core.metrics import LagSnapshot
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.delivery import Delivery
from phaseflow.streams.monitoring.lag import LagRow
from phaseflow.streams.monitoring.lag_report import groups_document
from phaseflow.streams.web.phase_status import PhaseStates
from phaseflow.streams.web.status_summary import AlertSource, DeadLetterSource, LagHistorySource


class CoordinatorHandler(Protocol):
    """What the prediction coordinator offers for ``POST /coordinator/*``.

    Both return a JSON-able summary for the response; a ``ValueError`` means the request
    cannot be served as asked (answered 409 with its message).
    """

    async def start(
        self, game_date: date, batch_id: str | None, requested_by: str
    ) -> Mapping[str, JsonValue]: ...

    async def complete(
        self, game_date: date, batch_id: str | None, requested_by: str
    ) -> Mapping[str, JsonValue]: ...


class WorkerState:
    """See the module docstring. ``delivery`` is what the worker resolved from the broker (None
    for an app built without asking it, as in-process tests do)."""

    def __init__(
        self, components: Components, *, settings: Settings, delivery: Delivery | None
    ) -> None:
        self._components = components
        self._settings = settings
        self._delivery = delivery

    @property
    def readiness(self) -> PhaseStates | None:
        """The readiness states of this worker's partitions, when readiness is installed."""
        return self._components.readiness

    def game_dates(self) -> set[date]:
        """The game dates this worker holds readiness state for."""
        processor = self._components.readiness
        if processor is None:
            return set()
        return {state.game_date for state in processor.states()}

    def lag(self) -> LagSnapshot | None:
        """The own group's lag per assigned (topic, partition); None without a lag monitor."""
        provider = self._components.lag
        return None if provider is None else provider()

    def lag_groups(self) -> list[dict[str, Any]] | None:
        """Every watched group as of the monitor's last round: status, reason, lag and each
        partition's offsets, offset lag, time lag and status; None without a lag monitor."""
        monitor = self._components.lag_monitor
        if monitor is None:
            return None
        return groups_document(monitor.rows(), monitor.groups, partitions=True)

    def notifier_problems(self) -> list[str]:
        """One line per notifier route that cannot deliver (none without notifiers)."""
        notifiers = self._components.notifiers
        return [] if notifiers is None else notifiers.problems()

    def lag_rows(self) -> list[LagRow] | None:
        """Every watched group's partitions as of the monitor's last round; None without a
        lag monitor."""
        monitor = self._components.lag_monitor
        return None if monitor is None else monitor.rows()

    def burrow_cluster(self) -> str:
        """The cluster name of the Burrow-compatible endpoints."""
        return self._settings.lag_burrow_cluster

    @property
    def lag_history(self) -> LagHistorySource | None:
        return self._components.lag_monitor

    @property
    def dead_letters(self) -> DeadLetterSource | None:
        return self._components.dead_letters

    @property
    def recent_alerts(self) -> AlertSource | None:
        return self._components.recent_alerts

    @property
    def coordinator(self) -> CoordinatorHandler | None:
        return self._components.coordinator

    def sinks(self) -> dict[str, dict[str, object]]:
        """Each installed BigQuery sink: running, rows buffered, and why it cannot start or
        write (sinks/install.py ``health()``)."""
        installed = {
            "prediction_sink": self._components.prediction_sink,
            "audit_sink": self._components.audit_sink,
        }
        return {name: sink.health() for name, sink in installed.items() if sink is not None}

    def deployment(self) -> dict[str, object]:
        """Who this worker is on the cluster and which guarantee it runs (docs/deployment.md)."""
        delivery = self._delivery
        settings = delivery.settings if delivery is not None else self._settings
        return {
            **identity_summary(settings),
            "processing_guarantee": settings.faust_processing_guarantee,
            "idempotent_producer": settings.idempotent_producer,
            "guarantee_reason": delivery.reason
            if delivery is not None
            else "not probed: the app was built without asking the broker",
        }
