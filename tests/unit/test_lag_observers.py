"""bench.lag_observers: `phaseflow lag` output trimmed to the run's groups, and first sightings."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

from bench.lag_observers import BurrowObservations, Timeline, trim_json, trim_table
from phaseflow.streams.json_output import write_json
from phaseflow.streams.monitoring.lag import LagRow
from phaseflow.streams.monitoring.lag_cli import format_table, lag_document
from phaseflow.streams.monitoring.lag_status import LagStatus

AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _row(group: str, status: LagStatus, lag: int) -> LagRow:
    return LagRow(group, "run.events", 0, 10, 10 + lag, lag, lag, 1.0, status, "why", AT)


ROWS = [
    _row("run.stopped", LagStatus.STOP, 6),
    _row("run-app", LagStatus.OK, 0),
    _row("run.slow", LagStatus.WARN, 40),
]
ALL_GROUPS = ["run-app", "run-app.prediction-workers", "run.slow", "run.stopped"]
OURS = {"run.stopped", "run.slow"}


def test_the_table_keeps_the_header_and_only_the_runs_groups() -> None:
    table = format_table(ROWS, ALL_GROUPS) + "\n(one sample: ...; use --watch)\n"
    lines = trim_table(table, OURS).splitlines()
    assert lines[0].split()[:2] == ["GROUP", "TOPIC"]
    assert [line.split()[0] for line in lines[1:3]] == ["run.slow", "run.stopped"]
    assert lines[3].startswith("group run.slow: WARN, lag 40 messages")
    assert lines[4].startswith("group run.stopped: STOP, lag 6 messages")
    assert lines[5:] == ["(one sample: ...; use --watch)"]
    assert "run-app" not in "\n".join(lines)


def test_the_json_document_keeps_only_the_runs_rows_and_groups() -> None:
    out = io.StringIO()
    write_json(out, lag_document(ROWS, ALL_GROUPS))
    document = json.loads(trim_json(out.getvalue(), OURS))
    assert [row["group"] for row in document["rows"]] == ["run.slow", "run.stopped"]
    assert [(g["group"], g["status"]) for g in document["groups"]] == [
        ("run.slow", "WARN"),
        ("run.stopped", "STOP"),
    ]
    assert document["samples"] == 1


def test_first_sighting_counts_only_from_the_cause() -> None:
    timeline = Timeline()
    for at, status in ((1.0, "STALL"), (5.0, "OK"), (9.0, "STALL"), (12.0, "STOP")):
        timeline.add("stopped", at, status)
    assert timeline.first("stopped", "STALL", after=4.0) == 9.0
    assert timeline.first("stopped", "STOP") == 12.0
    assert timeline.first("stopped", "REWIND") is None
    assert timeline.seen("stopped") == {"STALL": 2, "OK": 1, "STOP": 1}


def _burrow_body(status: str, observed_ms: int, offset: int, lag: int) -> dict[str, Any]:
    end = {"offset": offset, "timestamp": observed_ms, "observedAt": observed_ms, "lag": lag}
    partition = {"topic": "t", "partition": 0, "status": status, "end": end, "current_lag": lag}
    return {"status": {"status": "WARN" if status == "WARN" else "OK", "partitions": [partition]}}


def test_burrow_answers_give_first_sightings_and_the_steps_that_broke_the_trend() -> None:
    seen = BurrowObservations()
    answers = [(1.0, "OK", 1000, 10, 5), (1.5, "OK", 1000, 10, 5), (2.0, "OK", 2000, 15, 9)]
    answers += [(3.0, "OK", 3000, 20, 9), (4.0, "WARN", 4000, 25, 14)]
    for at, status, observed, offset, lag in answers:
        seen.record("slow", at, _burrow_body(status, observed, offset, lag))
    assert seen.partitions.first("slow", "WARN") == 4.0
    assert seen.groups.first("slow", "WARN") == 4.0
    # The repeated answer of one worker sample (1.5 s) is one sample, not a flat step.
    assert seen.steps_without_growth("slow", after=0.0) == ["3.0 s: lag 9 -> 9 (offset 15 -> 20)"]
    assert seen.steps_without_growth("slow", after=3.5) == []
