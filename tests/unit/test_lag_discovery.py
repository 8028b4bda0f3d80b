"""Group discovery filters and the per-group lag series on /metrics."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError

from phaseflow.streams.core.settings import Settings
from phaseflow.streams.monitoring.lag import LagRow, select_groups, watched_groups
from phaseflow.streams.monitoring.lag_metrics import LagRowsCollector
from phaseflow.streams.monitoring.lag_status import LagStatus

FOUND = ["billing", "phaseflow", "phaseflow.prediction-workers", "console-consumer-1", "etl.a"]


def test_own_groups_first_then_matching_discovered_ones() -> None:
    own = ["phaseflow", "phaseflow.prediction-workers"]
    assert select_groups(FOUND, own, ".*", "") == [
        "phaseflow",
        "phaseflow.prediction-workers",
        "billing",
        "console-consumer-1",
        "etl.a",
    ]


def test_exclude_and_include_are_full_matches_and_never_drop_own_groups() -> None:
    own = ["phaseflow"]
    assert select_groups(FOUND, own, ".*", "console-consumer-.*|phaseflow.*") == [
        "phaseflow",  # excluded by the pattern, watched anyway: it is ours
        "billing",
        "etl.a",
    ]
    assert select_groups(FOUND, own, "etl", "") == ["phaseflow"]  # "etl" does not match "etl.a"
    assert select_groups(FOUND, own, r"etl\..*", "") == ["phaseflow", "etl.a"]


def test_own_groups_come_from_the_settings() -> None:
    settings = Settings(app_id="pf", lag_groups=("extra",))  # type: ignore[call-arg]
    assert select_groups([], watched_groups(settings), ".*", "") == [
        "pf",
        settings.prediction_workers_group,
        "extra",
    ]


def test_a_bad_regex_names_the_setting() -> None:
    with pytest.raises(ValidationError, match="lag_exclude"):
        Settings(lag_exclude="(")  # type: ignore[call-arg]


def _row(group: str, partition: int, lag: int, status: LagStatus, seconds: float | None) -> LagRow:
    at = datetime(2026, 12, 7, tzinfo=UTC)
    return LagRow(group, "t", partition, 5, 5 + lag, lag, lag, seconds, status, "why", at)


def test_metrics_have_every_group_partition_with_status_and_time_lag() -> None:
    rows = [
        _row("a", 0, 7, LagStatus.STOP, 42.5),
        _row("b", 1, 0, LagStatus.OK, None),
    ]
    registry = CollectorRegistry()
    registry.register(LagRowsCollector(lambda: rows))
    text = generate_latest(registry).decode()
    assert 'phaseflow_group_lag_messages{group="a",partition="0",topic="t"} 7.0' in text
    assert 'phaseflow_group_lag_messages{group="b",partition="1",topic="t"} 0.0' in text
    assert 'phaseflow_group_lag_seconds{group="a",partition="0",topic="t"} 42.5' in text
    assert 'phaseflow_group_lag_seconds{group="b"' not in text  # unknown age: no series
    assert 'phaseflow_group_lag_status{group="a",partition="0",status="STOP",topic="t"} 1.0' in text
    assert 'phaseflow_group_lag_status{group="a",partition="0",status="OK",topic="t"} 0.0' in text
    assert 'phaseflow_group_lag_status{group="b",partition="1",status="OK",topic="t"} 1.0' in text
    rows.clear()  # read at scrape: gone groups leave no stale series
    assert "group=" not in generate_latest(registry).decode()
