"""Every watched group's per-partition lag on ``/metrics``, read from the monitor at scrape.

Labels ``group``, ``topic``, ``partition``:

* ``phaseflow_group_lag_messages``: effective lag in messages (transaction markers excluded)
* ``phaseflow_group_lag_seconds``: age of the oldest unread record; absent when unknown
* ``phaseflow_group_lag_status``: 1 for the partition's current status (label ``status``), one
  series per status so a dashboard can count partitions by status

Collected at scrape time from the monitor's last round (the same snapshot the alerts used), so
groups and partitions that disappeared are not left behind as stale series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from phaseflow.streams.monitoring.lag import LagRow
from phaseflow.streams.monitoring.lag_status import LagStatus

_LABELS = ["group", "topic", "partition"]


class LagRowsCollector(Collector):
    """A Prometheus collector over ``rows()`` (the monitor's :meth:`LagMonitor.rows`)."""

    def __init__(self, rows: Callable[[], Sequence[LagRow]]) -> None:
        self._rows = rows

    def collect(self) -> Iterator[Metric]:
        messages = GaugeMetricFamily(
            "phaseflow_group_lag_messages",
            "Consumer lag in messages per watched group and partition (effective).",
            labels=_LABELS,
        )
        seconds = GaugeMetricFamily(
            "phaseflow_group_lag_seconds",
            "Age of the oldest unread record per watched group and partition.",
            labels=_LABELS,
        )
        status = GaugeMetricFamily(
            "phaseflow_group_lag_status",
            "1 for the partition's current lag status (OK, WARN, REWIND, STALL, STOP), else 0.",
            labels=[*_LABELS, "status"],
        )
        for row in self._rows():
            labels = [row.group, row.topic, str(row.partition)]
            messages.add_metric(labels, row.lag)
            if row.lag_seconds is not None:
                seconds.add_metric(labels, row.lag_seconds)
            for each in LagStatus:
                status.add_metric([*labels, str(each)], 1.0 if each is row.status else 0.0)
        yield messages
        yield seconds
        yield status
