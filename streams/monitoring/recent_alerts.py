"""The latest alerts of the whole deployment, for the status page (``GET /``, ``GET /status``).

Alerts are raised by whichever worker owns the cause: readiness deadline and gate alerts by the
worker that owns the game date's partition, lag alerts by every worker's monitor, dead-letter
alerts by any. A worker that remembered only the alerts *it* published would show a different,
partial list on each worker. So each worker reads every partition of ``{prefix}.alerts`` itself
(no consumer group, so no rebalances and no committed offsets) and keeps the newest
``capacity`` alerts raised within ``lookback``. ``read_committed`` leaves out alerts of aborted
transactions (an alert sent by the readiness agent is part of its record's transaction).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from aiokafka import ConsumerRecord

from phaseflow.models.codec import EventDecodeError, decode
from phaseflow.models.events import Alert
from phaseflow.streams.core.topics import TopicFollower, TopicName

if TYPE_CHECKING:
    from phaseflow.streams.core.features import FeatureContext
    from phaseflow.streams.core.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_CAPACITY: Final = 50
DEFAULT_LOOKBACK: Final = timedelta(hours=24)


class RecentAlerts(TopicFollower):
    """A bounded, newest-first list of the alerts on the alerts topic.

    ``poll()`` reads what arrived since the last call; the first call starts the consumer,
    which reads the topic from its beginning (alerts are rare: transitions, not samples).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        capacity: int = DEFAULT_CAPACITY,
        lookback: timedelta = DEFAULT_LOOKBACK,
    ) -> None:
        super().__init__(settings, TopicName.ALERTS, max_batches=20, max_records=500)
        self._capacity = capacity
        self._lookback = lookback
        self._alerts: list[Alert] = []

    def observe(self, value: bytes | None) -> None:
        """Keep one record's alert if it is among the newest ``capacity``; skip unreadable ones
        (the topic is not validated on the way in)."""
        try:
            alert = decode(Alert, value or b"")
        except EventDecodeError:
            return
        self._alerts.append(alert)
        # Partitions are read in no particular order, so order by when the alert was raised.
        self._alerts.sort(key=lambda kept: kept.raised_at, reverse=True)
        del self._alerts[self._capacity :]

    def observe_record(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self.observe(record.value)

    def recent(self, now: datetime) -> list[Alert]:
        """The kept alerts raised within ``lookback`` of ``now``, newest first."""
        since = now - self._lookback
        return [alert for alert in self._alerts if alert.raised_at >= since]


def install(ctx: FeatureContext) -> RecentAlerts:
    """Follow the alerts topic at the lag monitor's pace."""
    feed = RecentAlerts(ctx.settings)

    @ctx.app.timer(interval=ctx.settings.lag_sample_interval_seconds)  # type: ignore[untyped-decorator]
    async def _read_alerts() -> None:
        try:
            await feed.poll()
        except Exception as error:  # noqa: BLE001 - the page shows the last list; retried
            log.warning("reading the alerts topic failed: %r", error)

    @ctx.app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def _stop_alerts(_sender: Any, **_: Any) -> None:
        await feed.stop()

    return feed
