"""``phaseflow lag``: the lag monitor's table, once or every interval (docs/lag-monitor.md)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from phaseflow.streams.core.settings import Settings
from phaseflow.streams.json_output import write_json
from phaseflow.streams.monitoring.lag import LagMonitor, LagRow, group_worst, worst_row
from phaseflow.streams.monitoring.lag_report import groups_document, ordered, row_document
from phaseflow.streams.monitoring.lag_status import LagStatus
from phaseflow.streams.text_table import aligned_rows

_HEADER = ("GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "LAG_S", "STATUS")


def format_table(rows: Sequence[LagRow], groups: Sequence[str]) -> str:
    """The ``phaseflow lag`` table, then one status line per group."""
    cells = [_HEADER]
    for row in sorted(rows, key=lambda row: (row.group, row.topic, row.partition)):
        lag = str(row.lag) if row.lag == row.raw_lag else f"{row.lag} (raw {row.raw_lag})"
        seconds = "-" if row.lag_seconds is None else f"{row.lag_seconds:.1f}"
        cells.append(
            (
                row.group,
                row.topic,
                str(row.partition),
                "-" if row.no_commit else str(row.committed),
                str(row.end),
                lag,
                seconds,
                str(row.status),
            )
        )
    lines = aligned_rows(cells)
    for group in groups:
        mine = [row for row in rows if row.group == group]
        if not mine:
            lines.append(f"group {group}: no committed offsets")
            continue
        status, deciding = group_worst(mine), worst_row(mine)
        line = f"group {group}: {status}, lag {sum(row.lag for row in mine)} messages"
        if status is not LagStatus.OK and deciding is not None:
            line += f"; {deciding.topic}[{deciding.partition}]: {deciding.reason}"
        lines.append(line)
    return "\n".join(line.rstrip() for line in lines)


def lag_document(rows: Sequence[LagRow], groups: Sequence[str]) -> dict[str, Any]:
    """``phaseflow lag --json``: every partition's row and each group's verdict."""
    return {
        "rows": [row_document(row) for row in ordered(rows)],
        "groups": groups_document(rows, groups),
        # STALL and a growing-lag WARN need a window of samples (phaseflow lag --watch); STOP
        # comes from commit times, so one sample shows it.
        "samples": 1,
    }


async def lag_command(
    settings: Settings,
    *,
    groups: Sequence[str],
    watch: bool,
    interval: float | None,
    out: TextIO,
    as_json: bool = False,
    err: TextIO | None = None,
) -> int:
    # With --json stdout holds the document only; a failure is one line on stderr.
    errors = (err or sys.stderr) if as_json else out
    # No --group: every discovered group (PHASEFLOW_LAG_INCLUDE/EXCLUDE) and our own.
    monitor = LagMonitor(settings, groups=list(groups) or None, interval=interval)
    try:
        await monitor.start(background=False)
    except Exception as error:  # noqa: BLE001 - reported to the operator as an exit code
        errors.write(f"cannot reach the broker at {settings.bootstrap_servers}: {error!r}\n")
        await monitor.stop()
        return 1
    commits = monitor.sampler.commit_times if monitor.sampler is not None else None
    if commits is not None and not commits.available:
        errors.write(
            f"commit times unavailable ({commits.error}): STOP needs a window of samples "
            "(--watch)\n"
        )
    try:
        while True:
            try:
                rows = await monitor.sample_once()
            except Exception as error:  # noqa: BLE001
                errors.write(f"sampling failed: {error!r}\n")
                if not watch:
                    return 1
            else:
                if as_json:
                    write_json(out, lag_document(rows, monitor.groups))
                    return 0
                if watch:
                    out.write(f"\n{datetime.now().astimezone():%Y-%m-%d %H:%M:%S %Z}\n")
                out.write(format_table(rows, monitor.groups) + "\n")
                if not watch:
                    out.write(
                        "(one sample: STALL and a growing-lag WARN need a window of samples; "
                        "use --watch)\n"
                    )
                    return 0
            out.flush()
            await asyncio.sleep(monitor.interval)
    finally:
        await monitor.stop()


def run_lag(
    settings: Settings,
    *,
    groups: Sequence[str] = (),
    watch: bool = False,
    interval: float | None = None,
    out: TextIO | None = None,
    as_json: bool = False,
) -> int:
    """``phaseflow lag``: the lag table once, or every ``interval`` with ``watch`` (Ctrl-C ends);
    ``as_json``: one sample as one JSON document."""
    try:
        return asyncio.run(
            lag_command(
                settings,
                groups=groups,
                watch=watch,
                interval=interval,
                out=out or sys.stdout,
                as_json=as_json,
            )
        )
    except KeyboardInterrupt:
        return 0
