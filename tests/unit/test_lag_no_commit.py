"""Partitions of a watched group without a committed offset: shown as NO_COMMIT (not left out)
in the monitor's rows, the table, the JSON document, /lag's groups and /metrics; never alerted,
and not counted in the worker's own lag (/ready)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, generate_latest

from phaseflow.models.events import Alert
from phaseflow.streams.core.clock import ManualClock
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.monitoring.install import own_lag
from phaseflow.streams.monitoring.lag import LagMonitor
from phaseflow.streams.monitoring.lag_cli import format_table, lag_document
from phaseflow.streams.monitoring.lag_metrics import LagRowsCollector
from phaseflow.streams.monitoring.lag_report import groups_document
from phaseflow.streams.monitoring.lag_sampler import PartitionLag, faust_internal
from phaseflow.streams.monitoring.lag_status import LagStatus

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
GROUP = "orders"


class Source:
    """Partition 0 committed at 10 of 12; partition 1 has no commit (log 3..8)."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.partition_1_committed: int | None = None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def sample(self, groups: Sequence[str]) -> list[PartitionLag]:
        now = self.clock.now()
        rows = [PartitionLag(GROUP, "t", 0, 10, 12, 2, 2, 0.5, now)]
        if self.partition_1_committed is None:
            rows.append(PartitionLag(GROUP, "t", 1, 3, 8, 5, 5, None, now, no_commit=True))
        else:
            committed = self.partition_1_committed
            rows.append(PartitionLag(GROUP, "t", 1, committed, 8, 8 - committed, 8, 0.1, now))
        return [row for row in rows if row.group in groups]


def _monitor(kind: type[Source] = Source) -> tuple[LagMonitor, Source, list[Alert]]:
    clock = ManualClock(T0)
    source = kind(clock)
    alerts: list[Alert] = []

    async def publish(alert: Alert) -> None:
        alerts.append(alert)

    settings = Settings(app_id="phaseflow", lag_window_seconds=30.0)
    monitor = LagMonitor(settings, groups=[GROUP], publish=publish, clock=clock, source=source)
    return monitor, source, alerts


async def test_a_partition_without_a_commit_is_a_no_commit_row_and_is_not_alerted() -> None:
    monitor, _, alerts = _monitor()
    rows = await monitor.sample_once()
    by_partition = {row.partition: row for row in rows}
    assert sorted(by_partition) == [0, 1]
    missing = by_partition[1]
    assert (missing.status, missing.no_commit) == (LagStatus.NO_COMMIT, True)
    assert (missing.committed, missing.end, missing.lag) == (3, 8, 5)
    assert missing.reason == "no committed offset; lag counted from the log start (offset 3)"
    assert by_partition[0].status is LagStatus.OK
    # Worse than OK, better than WARN: the group reads NO_COMMIT, and nobody is paged.
    assert monitor.group_status(GROUP) is LagStatus.NO_COMMIT
    assert LagStatus.OK.rank < LagStatus.NO_COMMIT.rank < LagStatus.WARN.rank
    assert alerts == []


async def test_table_json_and_lag_endpoint_document_show_it() -> None:
    monitor, _, _ = _monitor()
    rows = await monitor.sample_once()

    table = format_table(rows, monitor.groups).splitlines()
    assert table[2].split() == [GROUP, "t", "1", "-", "8", "5", "-", "NO_COMMIT"]
    assert table[3].startswith(f"group {GROUP}: NO_COMMIT, lag 7 messages; t[1]: no committed")

    document = lag_document(rows, monitor.groups)
    [uncommitted] = [row for row in document["rows"] if row["partition"] == 1]
    assert (uncommitted["committed"], uncommitted["log_start"]) == (None, 3)
    assert (uncommitted["lag"], uncommitted["status"]) == (5, "NO_COMMIT")
    [committed] = [row for row in document["rows"] if row["partition"] == 0]
    assert (committed["committed"], committed["log_start"]) == (10, None)

    [group] = groups_document(rows, monitor.groups, partitions=True)
    assert (group["group"], group["status"], group["lag"]) == (GROUP, "NO_COMMIT", 7)
    assert group["reason"].startswith("t[1] NO_COMMIT: no committed offset")
    assert [p["status"] for p in group["partitions"]] == ["OK", "NO_COMMIT"]
    assert [p["lag_seconds"] for p in group["partitions"]] == [0.5, None]


async def test_metrics_have_a_series_for_it() -> None:
    monitor, _, _ = _monitor()
    await monitor.sample_once()
    registry = CollectorRegistry()
    registry.register(LagRowsCollector(monitor.rows))
    text = generate_latest(registry).decode()
    assert f'phaseflow_group_lag_messages{{group="{GROUP}",partition="1",topic="t"}} 5.0' in text
    labels = f'group="{GROUP}",partition="1"'
    assert f'phaseflow_group_lag_status{{{labels},status="NO_COMMIT",topic="t"}} 1.0' in text
    assert f'phaseflow_group_lag_status{{{labels},status="OK",topic="t"}} 0.0' in text
    assert f'phaseflow_group_lag_seconds{{{labels},topic="t"}}' not in text  # age unknown


async def test_own_lag_for_ready_leaves_it_out() -> None:
    monitor, _, _ = _monitor()
    rows = await monitor.sample_once()
    assert own_lag(rows, GROUP, None) == {("t", 0): 2}


async def test_a_first_commit_turns_it_into_an_evaluated_row_and_a_lost_one_back() -> None:
    monitor, source, _ = _monitor()
    await monitor.sample_once()
    source.partition_1_committed = 6
    source.clock.advance(timedelta(seconds=5))
    rows = await monitor.sample_once()
    [row] = [row for row in rows if row.partition == 1]
    assert (row.status, row.no_commit, row.committed, row.lag) == (LagStatus.OK, False, 6, 2)
    # Offsets deleted (kafka-consumer-groups --delete-offsets): NO_COMMIT again, one row only.
    source.partition_1_committed = None
    source.clock.advance(timedelta(seconds=5))
    rows = await monitor.sample_once()
    assert [(row.status, row.no_commit) for row in rows if row.partition == 1] == [
        (LagStatus.NO_COMMIT, True)
    ]


async def test_an_empty_partition_without_a_commit_leaves_the_group_ok() -> None:
    # A member assigned an idle partition never commits it: nothing to read, nothing wrong.
    class EmptyPartition(Source):
        async def sample(self, groups: Sequence[str]) -> list[PartitionLag]:
            now = self.clock.now()
            rows = [
                PartitionLag(GROUP, "t", 0, 10, 10, 0, 0, 0.0, now),
                PartitionLag(GROUP, "t", 1, 0, 0, 0, 0, None, now, no_commit=True),
            ]
            return [row for row in rows if row.group in groups]

    monitor, _, alerts = _monitor(EmptyPartition)
    rows = await monitor.sample_once()
    assert [row.status for row in rows] == [LagStatus.OK, LagStatus.NO_COMMIT]
    assert monitor.group_status(GROUP) is LagStatus.OK
    assert (
        format_table(rows, monitor.groups).splitlines()[-1] == f"group {GROUP}: OK, lag 0 messages"
    )
    [group] = groups_document(rows, monitor.groups)
    assert (group["status"], group["worst"]) == ("OK", None)
    assert alerts == []


def test_a_faust_apps_own_changelog_and_leader_partitions_are_not_its_lag() -> None:
    # A worker's members are assigned its tables' changelogs and leader topic, which Faust
    # reads but never commits: they showed as NO_COMMIT "lag" growing with every table write.
    assert faust_internal("dep-a", TopicPartition("dep-a-readiness-changelog", 1))
    assert faust_internal("dep-a", TopicPartition("dep-a-__assignor-__leader", 0))
    # The app's stream topics, another app's changelog and a plain group's topics stay.
    assert not faust_internal("dep-a", TopicPartition("dep-a.phase-completions", 1))
    assert not faust_internal("dep-a", TopicPartition("dep-b-readiness-changelog", 1))
    assert not faust_internal("orders", TopicPartition("orders.events-changelog", 0))
