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

from phaseflow.streams.monitoring.lag import LagRow, group_worst, worst_row
from phaseflow.streams.monitoring.lag_status import LagStatus


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
    status = group_worst(mine) if mine else None
    deciding = worst_row(mine)
    if deciding is None:
        reason = "no committed offsets"
    elif status is LagStatus.OK:
        reason = f"{len(mine)} partition(s) caught up or keeping pace"
    else:
        reason = f"{deciding.topic}[{deciding.partition}] {deciding.status}: {deciding.reason}"
    document: dict[str, Any] = {
        "group": group,
        "committed_offsets": any(not row.no_commit for row in mine),
        "status": None if status is None else str(status),
        "reason": reason,
        "lag": sum(row.lag for row in mine),
        "worst": None
        if deciding is None or status is LagStatus.OK
        else {
            "topic": deciding.topic,
            "partition": deciding.partition,
            "reason": deciding.reason,
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
