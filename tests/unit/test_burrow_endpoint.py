"""The Burrow-compatible answers (phaseflow.streams.web.burrow) against Burrow's documented
schema (tests/support/burrow_schema.py, copied from linkedin/Burrow's Go structs), field by
field, and the mapping of phaseflow's numbers and statuses onto it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from phaseflow.streams.monitoring.lag import LagRow
from phaseflow.streams.monitoring.lag_status import LagStatus
from phaseflow.streams.web import burrow
from phaseflow.streams.web.openapi import openapi_document
from tests.support import burrow_schema
from tests.support.burrow_schema import mismatches

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
CLUSTER = "local"


def row(
    group: str,
    partition: int,
    status: LagStatus,
    *,
    committed: int = 10,
    end: int = 10,
    lag: int | None = None,
    committed_at: datetime | None = None,
    topic: str = "events",
) -> LagRow:
    raw = end - committed
    return LagRow(
        group=group,
        topic=topic,
        partition=partition,
        committed=committed,
        end=end,
        lag=raw if lag is None else lag,
        raw_lag=raw,
        lag_seconds=0.0,
        status=status,
        reason="test",
        sampled_at=NOW,
        committed_at=committed_at,
    )


ROWS = [
    # exactly_once: only the commit marker is left after the committed offset
    row("eos", 0, LagStatus.OK, committed=41, end=42, lag=0, committed_at=NOW),
    row("eos", 1, LagStatus.OK, committed=7, end=7, committed_at=NOW),
    # a consumer that died: STOP, and a second partition still fine
    row("dead", 0, LagStatus.STOP, committed=4, end=10, committed_at=NOW - timedelta(minutes=5)),
    row("dead", 1, LagStatus.OK, committed=3, end=3, committed_at=NOW),
    # a slow consumer: WARN on one partition, the larger lag on the other (OK)
    row("slow", 0, LagStatus.WARN, committed=100, end=150, committed_at=NOW),
    row("slow", 1, LagStatus.OK, committed=100, end=180, committed_at=None),
    row("slow", 2, LagStatus.OK, committed=5, end=85, committed_at=NOW),
]


def lag_body(group: str, rows: list[LagRow] = ROWS, *, show_all: bool = True) -> Any:
    status = burrow.consumer_status(CLUSTER, group, rows, show_all=show_all)
    code, body = burrow.status_response(status, f"/v3/kafka/{CLUSTER}/consumer/{group}/lag", "h")
    # What a client decodes: the view writes the body with orjson.
    return code, orjson.loads(orjson.dumps(body))


def test_every_answer_matches_burrows_schema_field_by_field() -> None:
    for group in ("eos", "dead", "slow", "unknown"):
        for show_all in (True, False):
            _, body = lag_body(group, show_all=show_all)
            assert mismatches(body, burrow_schema.CONSUMER_STATUS_RESPONSE) == [], group
    url, host = "/v3/kafka", "h"
    checks = [
        (burrow.cluster_list(CLUSTER, url, host), burrow_schema.CLUSTER_LIST_RESPONSE),
        (burrow.consumer_list(["b", "a", "b"], url, host), burrow_schema.CONSUMER_LIST_RESPONSE),
        (burrow.error_body("cluster not found", url, host), burrow_schema.ERROR_RESPONSE),
    ]
    for body, schema in checks:
        assert mismatches(orjson.loads(orjson.dumps(body)), schema) == []


def test_the_checker_finds_a_renamed_field_a_wrong_type_and_a_foreign_status() -> None:
    _, body = lag_body("slow")
    body["status"]["total_lag"] = body["status"].pop("totallag")
    body["status"]["partitions"][0]["partition"] = "0"
    body["status"]["maxlag"]["status"] = "NO_COMMIT"
    body["status"]["partitions"][1]["end"]["lag"] = -1
    assert mismatches(body, burrow_schema.CONSUMER_STATUS_RESPONSE) == [
        "$.status: missing field 'totallag'",
        "$.status: field 'total_lag' is not Burrow's",
        "$.status.partitions[0].partition: expected int, got '0'",
        "$.status.partitions[1].end.lag: expected uint, got -1",
        (
            "$.status.maxlag.status: 'NO_COMMIT' is not one of "
            "['OK', 'REWIND', 'STALL', 'STOP', 'WARN']"
        ),
    ]


def test_a_healthy_exactly_once_group_is_ok_with_no_lag() -> None:
    code, body = lag_body("eos")
    assert code == 200
    assert body["error"] is False
    assert body["message"] == "consumer status returned"
    assert body["request"] == {"url": "/v3/kafka/local/consumer/eos/lag", "host": "h"}
    status = body["status"]
    assert (status["cluster"], status["group"], status["status"]) == ("local", "eos", "OK")
    assert status["totallag"] == 0  # Burrow: 1 (the commit marker), and the group ERR
    assert status["partition_count"] == 2
    assert status["complete"] == 1.0
    first = status["partitions"][0]
    millis = int(NOW.timestamp() * 1000)
    assert first == {
        "topic": "events",
        "partition": 0,
        "owner": "",
        "client_id": "",
        "status": "OK",
        "start": {"offset": 41, "timestamp": millis, "observedAt": millis, "lag": 0},
        "end": {"offset": 41, "timestamp": millis, "observedAt": millis, "lag": 0},
        "current_lag": 0,
        "complete": 1.0,
    }


def test_stop_makes_the_group_err_with_the_commit_time_and_the_max_lag() -> None:
    _, body = lag_body("dead")
    status = body["status"]
    assert status["status"] == "ERR"
    stopped = status["partitions"][0]
    assert (stopped["status"], stopped["current_lag"]) == ("STOP", 6)
    commit_millis = int((NOW - timedelta(minutes=5)).timestamp() * 1000)
    assert stopped["end"]["timestamp"] == commit_millis
    assert stopped["end"]["observedAt"] == int(NOW.timestamp() * 1000)
    assert status["maxlag"] == stopped
    assert status["totallag"] == 6


def test_rewind_and_stall_are_err_and_warn_is_warn() -> None:
    for partition_status, group_status in (
        (LagStatus.REWIND, "ERR"),
        (LagStatus.STALL, "ERR"),
        (LagStatus.WARN, "WARN"),
        (LagStatus.OK, "OK"),
    ):
        rows = [row("g", 0, LagStatus.OK), row("g", 1, partition_status, committed=1)]
        _, body = lag_body("g", rows)
        assert body["status"]["status"] == group_status
        assert body["status"]["partitions"][1]["status"] == str(partition_status)


def test_maxlag_is_the_partition_with_the_largest_current_lag_even_when_ok() -> None:
    _, body = lag_body("slow")
    status = body["status"]
    assert status["status"] == "WARN"
    assert status["totallag"] == 50 + 80 + 80
    # The first of the two largest (topic, partition order), as Burrow's strict comparison.
    assert (status["maxlag"]["partition"], status["maxlag"]["current_lag"]) == (1, 80)
    # Commit time unknown (no __consumer_offsets): the sample's time stands in.
    assert status["partitions"][1]["end"]["timestamp"] == int(NOW.timestamp() * 1000)


def test_status_lists_only_partitions_not_ok_but_counts_all() -> None:
    _, body = lag_body("slow", show_all=False)
    status = body["status"]
    assert [p["partition"] for p in status["partitions"]] == [0]
    assert status["partition_count"] == 3
    assert status["maxlag"]["partition"] == 1
    assert status["totallag"] == 210


def test_an_unknown_group_is_burrows_notfound_with_a_404() -> None:
    code, body = lag_body("nobody")
    assert code == 404
    assert body["error"] is False  # Burrow answers NOTFOUND as a status, not as an error
    assert body["status"] == {
        "cluster": "local",
        "group": "nobody",
        "status": "NOTFOUND",
        "complete": 1.0,
        "partitions": [],
        "partition_count": 0,
        "maxlag": None,
        "totallag": 0,
    }


def test_a_status_burrow_has_no_name_for_is_an_ok_partition_without_commits() -> None:
    # A partition the group never committed (the monitor may report it): Burrow shows such a
    # partition as OK, incomplete, without start and end.
    no_commit = row("g", 1, LagStatus.OK, committed=0, end=5)
    object.__setattr__(no_commit, "status", "NO_COMMIT")
    _, body = lag_body("g", [row("g", 0, LagStatus.OK), no_commit])
    status = body["status"]
    assert mismatches(body, burrow_schema.CONSUMER_STATUS_RESPONSE) == []
    partition = status["partitions"][1]
    assert (partition["status"], partition["start"], partition["end"]) == ("OK", None, None)
    assert partition["complete"] == 0.0
    assert status["complete"] == 0.5
    # Its whole-log lag is no consumer's lag: not in current_lag, totallag or maxlag.
    assert partition["current_lag"] == 0
    assert status["totallag"] == status["partitions"][0]["current_lag"]
    assert status["maxlag"]["partition"] == 0


def test_consumer_list_is_sorted_and_unique_and_errors_are_burrows() -> None:
    body = burrow.consumer_list(["slow", "eos", "slow"], "/v3/kafka/local/consumer", "h")
    assert body["consumers"] == ["eos", "slow"]
    assert body["message"] == "consumer list returned"
    error = burrow.error_body("cluster not found", "/v3/kafka/x/consumer", "h")
    assert error == {
        "error": True,
        "message": "cluster not found",
        "request": {"url": "/v3/kafka/x/consumer", "host": "h"},
    }


def test_the_openapi_document_names_burrows_fields() -> None:
    schemas = openapi_document()["components"]["schemas"]
    pairs: dict[str, dict[str, Any]] = {
        "BurrowConsumerStatusResponse": burrow_schema.CONSUMER_STATUS_RESPONSE,
        "BurrowConsumerGroupStatus": burrow_schema.CONSUMER_GROUP_STATUS,
        "BurrowPartitionStatus": burrow_schema.PARTITION_STATUS,
        "BurrowConsumerOffset": burrow_schema.CONSUMER_OFFSET,
        "BurrowRequest": burrow_schema.REQUEST_INFO,
        "BurrowClusterList": burrow_schema.CLUSTER_LIST_RESPONSE,
        "BurrowConsumerList": burrow_schema.CONSUMER_LIST_RESPONSE,
        "BurrowError": burrow_schema.ERROR_RESPONSE,
    }
    for name, fields in pairs.items():
        assert set(schemas[name]["required"]) == set(fields), name
        assert set(schemas[name]["properties"]) == set(fields), name
