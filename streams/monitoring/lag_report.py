"""Every watched group's lag as JSON: one shape for ``phaseflow lag --json`` and ``GET /lag``.

Per group: its status (the worst of its partitions), the reason in words, the total lag, and
(for ``/lag``) every partition's offsets, offset lag, time lag and status. Partitions without a
committed offset (``NO_COMMIT``) have ``committed: null`` and ``log_start``: their lag counts
from there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from phaseflow.streams.monitoring.lag import LagRow
from phaseflow.streams.monitoring.lag_status import LagStatus, worst


def row_document(row: LagRow) -> dict[str, Any]:
    """One partition: every :class:`LagRow` field, ``status`` as text, ``log_start``."""
    fields = {**dataclasses.asdict(row), "status": str(row.status)}
    fields["log_start"] = row.committed if row.no_commit else None
    if row.no_commit:
        fields["committed"] = None  # as Kafka's tool shows it: there is none
    return fields


def ordered(rows: Sequence[LagRow]) -> list[LagRow]:
    return sorted(rows, key=lambda row: (row.group, row.topic, row.partition))


def group_document(
    group: str, rows: Sequence[LagRow], *, partitions: bool = False
) -> dict[str, Any]:
    """``group``'s verdict from its ``rows``; with ``partitions`` also each partition's row."""
    mine = ordered([row for row in rows if row.group == group])
    status = worst(row.status for row in mine) if mine else None
    worst_row = max(mine, key=lambda row: (row.status.rank, row.lag)) if mine else None
    if worst_row is None:
        reason = "no committed offsets"
    elif worst_row.status is LagStatus.OK:
        reason = f"all {len(mine)} partition(s) OK"
    else:
        reason = f"{worst_row.topic}[{worst_row.partition}] {worst_row.status}: {worst_row.reason}"
    document: dict[str, Any] = {
        "group": group,
        "committed_offsets": any(not row.no_commit for row in mine),
        "status": None if status is None else str(status),
        "reason": reason,
        "lag": sum(row.lag for row in mine),
        "worst": None
        if worst_row is None or worst_row.status is LagStatus.OK
        else {
            "topic": worst_row.topic,
            "partition": worst_row.partition,
            "reason": worst_row.reason,
        },
    }
    if partitions:
        document["partitions"] = [row_document(row) for row in mine]
    return document


def groups_document(
    rows: Sequence[LagRow], groups: Sequence[str], *, partitions: bool = False
) -> list[dict[str, Any]]:
    """:func:`group_document` for every group of ``groups``, in that order."""
    return [group_document(group, rows, partitions=partitions) for group in groups]
