"""Burrow's documented HTTP v3 response schema, written down as data, and a checker.

Copied field by field from linkedin/Burrow at commit ced55ba (master, "Merge pull request #852"):

* ``core/internal/httpserver/structs.go``: ``httpResponseConsumerStatus`` (error, message,
  status, request), ``httpResponseRequestInfo`` (``URI`` as ``url``, host),
  ``httpResponseClusterList``, ``httpResponseConsumerList``, ``httpResponseError``;
* ``core/protocol/evaluator.go``: ``ConsumerGroupStatus`` (``TotalPartitions`` as
  ``partition_count``, ``Maxlag`` as ``maxlag``, ``TotalLag`` as ``totallag``),
  ``PartitionStatus``, and ``StatusConstant`` with its strings
  ``NOTFOUND, OK, WARN, ERR, STOP, STALL, REWIND`` (groups use the first four, partitions
  OK and the last four, as the comments there say);
* ``core/protocol/storage.go``: ``ConsumerOffset`` (``ObservedTimestamp`` as ``observedAt``;
  ``Order`` is ``json:"-"``) and ``Lag``, whose ``MarshalJSON`` writes a bare number (a nil
  ``*Lag`` is null).

Go pointers (``*ConsumerOffset``, ``*PartitionStatus``, ``*Lag``) may be null; Go integers are
JSON integers (``uint64``: never negative); ``float32`` is any JSON number (Go writes 1.0 as 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True)
class Nullable:
    inner: Any


@dataclass(frozen=True)
class ArrayOf:
    item: Any


@dataclass(frozen=True)
class OneOf:
    values: frozenset[str]


STRING: Final = "string"
BOOL: Final = "bool"
INT: Final = "int"  # int32 / int / int64
UINT: Final = "uint"  # uint64
FLOAT: Final = "float"  # float32

GROUP_STATUSES: Final = OneOf(frozenset({"NOTFOUND", "OK", "WARN", "ERR"}))
PARTITION_STATUSES: Final = OneOf(frozenset({"OK", "WARN", "STOP", "STALL", "REWIND"}))

CONSUMER_OFFSET: Final = {
    "offset": INT,
    "timestamp": INT,
    "observedAt": INT,
    "lag": Nullable(UINT),
}
PARTITION_STATUS: Final = {
    "topic": STRING,
    "partition": INT,
    "owner": STRING,
    "client_id": STRING,
    "status": PARTITION_STATUSES,
    "start": Nullable(CONSUMER_OFFSET),
    "end": Nullable(CONSUMER_OFFSET),
    "current_lag": UINT,
    "complete": FLOAT,
}
CONSUMER_GROUP_STATUS: Final = {
    "cluster": STRING,
    "group": STRING,
    "status": GROUP_STATUSES,
    "complete": FLOAT,
    "partitions": ArrayOf(PARTITION_STATUS),
    "partition_count": INT,
    "maxlag": Nullable(PARTITION_STATUS),
    "totallag": UINT,
}
REQUEST_INFO: Final = {"url": STRING, "host": STRING}
CONSUMER_STATUS_RESPONSE: Final = {
    "error": BOOL,
    "message": STRING,
    "status": CONSUMER_GROUP_STATUS,
    "request": REQUEST_INFO,
}
CLUSTER_LIST_RESPONSE: Final = {
    "error": BOOL,
    "message": STRING,
    "clusters": ArrayOf(STRING),
    "request": REQUEST_INFO,
}
CONSUMER_LIST_RESPONSE: Final = {
    "error": BOOL,
    "message": STRING,
    "consumers": ArrayOf(STRING),
    "request": REQUEST_INFO,
}
ERROR_RESPONSE: Final = {"error": BOOL, "message": STRING, "request": REQUEST_INFO}


def mismatches(value: Any, schema: Any, path: str = "$") -> list[str]:
    """Every way ``value`` (decoded JSON) differs from ``schema``: missing and extra field
    names, wrong types, a status outside Burrow's strings. Empty when it matches."""
    if isinstance(schema, Nullable):
        return [] if value is None else mismatches(value, schema.inner, path)
    if isinstance(schema, dict):
        return _object(value, schema, path)
    if isinstance(schema, ArrayOf):
        if not isinstance(value, list):
            return [f"{path}: expected an array, got {value!r}"]
        return [
            problem
            for index, item in enumerate(value)
            for problem in mismatches(item, schema.item, f"{path}[{index}]")
        ]
    if isinstance(schema, OneOf):
        ok = value in schema.values
        return [] if ok else [f"{path}: {value!r} is not one of {sorted(schema.values)}"]
    return _scalar(value, schema, path)


def _object(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: expected an object, got {value!r}"]
    found = [f"{path}: missing field {name!r}" for name in schema if name not in value]
    found += [f"{path}: field {name!r} is not Burrow's" for name in value if name not in schema]
    for name, inner in schema.items():
        if name in value:
            found += mismatches(value[name], inner, f"{path}.{name}")
    return found


def _scalar(value: Any, kind: str, path: str) -> list[str]:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    ok = {
        STRING: isinstance(value, str),
        BOOL: isinstance(value, bool),
        INT: is_int,
        UINT: is_int and value >= 0,
        FLOAT: is_int or isinstance(value, float),
    }[kind]
    return [] if ok else [f"{path}: expected {kind}, got {value!r}"]
