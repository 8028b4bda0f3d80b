"""Burrow-compatible answers built from the lag monitor's last round (docs/lag-monitor.md).

Tools built on Burrow's HTTP API v3 (dashboards, alert scripts) read the same JSON from a
phaseflow worker. The shapes are Burrow's (``core/protocol/evaluator.go``,
``core/protocol/storage.go`` and ``core/internal/httpserver/structs.go`` of linkedin/Burrow);
the numbers and statuses are phaseflow's:

* A partition's status is phaseflow's, which has Burrow's five names (OK, WARN, REWIND, STALL,
  STOP). A status Burrow has no name for (a partition without a commit, if the monitor reports
  one) is ``OK`` with ``complete`` 0 and no ``start``/``end``: what Burrow shows for a
  partition it holds no commit for.
* A group's status is Burrow's: ``ERR`` if any partition is REWIND, STALL or STOP, else
  ``WARN`` if any is WARN, else ``OK``; ``NOTFOUND`` (HTTP 404) for a group the monitor has no
  partitions of, or another cluster name.
* ``current_lag`` is phaseflow's *effective* lag: transaction markers and aborted records are
  not lag (Burrow counts them, and calls a healthy exactly_once group ERR).
* ``start`` and ``end`` are both the latest commit: phaseflow keeps statuses over a window, not
  Burrow's ring of commits. ``timestamp`` is the commit's time from ``__consumer_offsets`` (the
  sample's time when unknown), ``observedAt`` the sample's, both in epoch milliseconds as
  Burrow's; ``lag`` the effective lag at that sample.
* ``owner`` and ``client_id`` are empty: Burrow leaves them empty when it does not know them,
  and the monitor does not describe group members.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

from phaseflow.streams.monitoring.lag import LagRow

#: Partition statuses with the same name in Burrow (StatusConstant, core/protocol/evaluator.go).
BURROW_PARTITION_STATUSES: Final = frozenset({"OK", "WARN", "REWIND", "STALL", "STOP"})
#: Partition statuses that make a Burrow group ``ERR`` (Burrow: anything above StatusError).
_ERROR_STATUSES: Final = frozenset({"REWIND", "STALL", "STOP"})

STATUS_MESSAGE: Final = "consumer status returned"


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def partition_status(row: LagRow) -> dict[str, Any]:
    """One ``PartitionStatus`` of Burrow for the monitor's row."""
    status = str(row.status)
    known = status in BURROW_PARTITION_STATUSES
    commit: dict[str, Any] | None = None
    if known:
        committed_at = row.committed_at or row.sampled_at
        commit = {
            "offset": row.committed,
            "timestamp": _millis(committed_at),
            "observedAt": _millis(row.sampled_at),
            "lag": row.lag,
        }
    return {
        "topic": row.topic,
        "partition": row.partition,
        "owner": "",
        "client_id": "",
        "status": status if known else "OK",
        "start": commit,
        "end": commit,
        # A partition without a commit has no lag of a consumer in Burrow (its evaluator holds
        # no offsets for it), so the whole-log lag of a NO_COMMIT row stays out of the totals.
        "current_lag": row.lag if known else 0,
        "complete": 1.0 if known else 0.0,
    }


def group_status(partition_statuses: Iterable[str]) -> str:
    """Burrow's group status (OK/WARN/ERR) of the partitions' statuses."""
    found = set(partition_statuses)
    if found & _ERROR_STATUSES:
        return "ERR"
    return "WARN" if "WARN" in found else "OK"


def not_found(cluster: str, group: str) -> dict[str, Any]:
    """Burrow's ``ConsumerGroupStatus`` for a group it does not know (caching.go)."""
    return {
        "cluster": cluster,
        "group": group,
        "status": "NOTFOUND",
        "complete": 1.0,
        "partitions": [],
        "partition_count": 0,
        "maxlag": None,
        "totallag": 0,
    }


def consumer_status(
    cluster: str, group: str, rows: Sequence[LagRow], *, show_all: bool = True
) -> dict[str, Any]:
    """Burrow's ``ConsumerGroupStatus`` of ``group`` from the monitor's ``rows`` (all groups).

    ``show_all``: every partition (``/lag``); otherwise only those not OK (``/status``), with
    the counts and the max lag still over all of them, as Burrow does.
    """
    mine = sorted((row for row in rows if row.group == group), key=lambda r: (r.topic, r.partition))
    if not mine:
        return not_found(cluster, group)
    partitions = [partition_status(row) for row in mine]
    maxlag: dict[str, Any] | None = None
    for partition in partitions:  # the first of the largest, as Burrow's strict comparison
        if maxlag is None or partition["current_lag"] > maxlag["current_lag"]:
            maxlag = partition
    complete = sum(1 for partition in partitions if partition["complete"] == 1.0)
    return {
        "cluster": cluster,
        "group": group,
        "status": group_status(partition["status"] for partition in partitions),
        "complete": complete / len(partitions),
        "partitions": partitions
        if show_all
        else [partition for partition in partitions if partition["status"] != "OK"],
        "partition_count": len(partitions),
        "maxlag": maxlag,
        "totallag": sum(partition["current_lag"] for partition in partitions),
    }


def request_info(url: str, host: str) -> dict[str, str]:
    """Burrow's ``request`` member: the path asked for and the answering host."""
    return {"url": url, "host": host}


def status_response(status: dict[str, Any], url: str, host: str) -> tuple[int, dict[str, Any]]:
    """HTTP status and body of ``/consumer/{group}/lag`` (or ``/status``): 404 for NOTFOUND,
    with the same body shape (Burrow's handleConsumerStatus)."""
    body = {
        "error": False,
        "message": STATUS_MESSAGE,
        "status": status,
        "request": request_info(url, host),
    }
    return (404 if status["status"] == "NOTFOUND" else 200), body


def error_body(message: str, url: str, host: str) -> dict[str, Any]:
    """Burrow's ``httpResponseError`` (e.g. ``cluster not found``)."""
    return {"error": True, "message": message, "request": request_info(url, host)}


def cluster_list(cluster: str, url: str, host: str) -> dict[str, Any]:
    return {
        "error": False,
        "message": "cluster list returned",
        "clusters": [cluster],
        "request": request_info(url, host),
    }


def consumer_list(groups: Iterable[str], url: str, host: str) -> dict[str, Any]:
    return {
        "error": False,
        "message": "consumer list returned",
        "consumers": sorted(set(groups)),
        "request": request_info(url, host),
    }
