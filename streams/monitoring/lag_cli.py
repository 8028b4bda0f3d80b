"""``phaseflow lag``: the lag monitor's table, once or every interval (docs/lag-monitor.md)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import TextIO

from phaseflow.streams.core.settings import Settings
from phaseflow.streams.monitoring.lag import LagMonitor, LagRow
from phaseflow.streams.monitoring.lag_status import LagStatus, worst
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
                str(row.committed),
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
        status = worst(row.status for row in mine)
        worst_row = max(mine, key=lambda row: (row.status.rank, row.lag))
        lines.append(
            f"group {group}: {status}, lag {sum(row.lag for row in mine)} messages"
            + (
                ""
                if status is LagStatus.OK
                else f"; {worst_row.topic}[{worst_row.partition}]: {worst_row.reason}"
            )
        )
    return "\n".join(line.rstrip() for line in lines)


async def lag_command(
    settings: Settings,
    *,
    groups: Sequence[str],
    watch: bool,
    interval: float | None,
    out: TextIO,
) -> int:
    # No --group: every discovered group (PHASEFLOW_LAG_INCLUDE/EXCLUDE) and our own.
    monitor = LagMonitor(settings, groups=list(groups) or None, interval=interval)
    try:
        await monitor.start(background=False)
    except Exception as error:  # noqa: BLE001 - reported to the operator as an exit code
        out.write(f"cannot reach the broker at {settings.bootstrap_servers}: {error!r}\n")
        await monitor.stop()
        return 1
    commits = monitor.sampler.commit_times if monitor.sampler is not None else None
    if commits is not None and not commits.available:
        out.write(
            f"commit times unavailable ({commits.error}): STOP needs a window of samples "
            "(--watch)\n"
        )
    try:
        while True:
            try:
                rows = await monitor.sample_once()
            except Exception as error:  # noqa: BLE001
                out.write(f"sampling failed: {error!r}\n")
                if not watch:
                    return 1
            else:
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
) -> int:
    """``phaseflow lag``: the lag table once, or every ``interval`` with ``watch`` (Ctrl-C ends)."""
    try:
        return asyncio.run(
            lag_command(
                settings, groups=groups, watch=watch, interval=interval, out=out or sys.stdout
            )
        )
    except KeyboardInterrupt:
        return 0
