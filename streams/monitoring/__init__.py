"""Monitoring (docs/lag-monitor.md): consumer lag so far."""

from phaseflow.streams.monitoring.alert_publisher import KafkaAlertPublisher
from phaseflow.streams.monitoring.lag import LagMonitor, LagRow, build_alert
from phaseflow.streams.monitoring.lag_cli import run_lag
from phaseflow.streams.monitoring.lag_sampler import LagSampler, PartitionLag
from phaseflow.streams.monitoring.lag_status import LagEvaluator, LagPolicy, LagSample, LagStatus

__all__ = [
    "KafkaAlertPublisher",
    "LagEvaluator",
    "LagMonitor",
    "LagPolicy",
    "LagRow",
    "LagSample",
    "LagSampler",
    "LagStatus",
    "PartitionLag",
    "build_alert",
    "run_lag",
]
