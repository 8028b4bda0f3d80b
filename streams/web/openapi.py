"""The OpenAPI 3.1 document of the HTTP API, served at ``/openapi.json``.

Request schemas come from the pydantic models the endpoints validate with, so the document
cannot drift from what the endpoints accept.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

from phaseflow.models.events import PhaseCompletion

_ERROR: Final = {"$ref": "#/components/schemas/Error"}
_JSON_OBJECT: Final = {"type": "object"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed body: `error` says why, `field` names the field (or null).",
        401: "Missing or wrong API key (the same answer for both).",
        409: "The coordinator cannot do this now.",
        413: "Body larger than `PHASEFLOW_MAX_MESSAGE_BYTES`.",
        429: "Over the per-key rate limit; wait `Retry-After` seconds.",
        503: "Not available: broker, component or acknowledgement missing.",
    }
    responses = {str(code): _json(_ERROR, text[code]) for code in codes}
    if 429 in codes:
        responses["429"]["headers"] = {
            "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}
        }
    return responses


def _mutating(summary: str, body_ref: str, ok: str, *extra: int) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": [{"bearer": []}, {"apiKey": []}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": body_ref}}},
            },
            "responses": {
                "202": _json(_JSON_OBJECT, ok),
                **_errors(400, 401, 413, 429, 503, *extra),
            },
        }
    }


def _open(
    summary: str, ok: str, *extra: int, text: bool = False, media: str = "text/plain"
) -> dict[str, Any]:
    if text:
        response: dict[str, Any] = {
            "description": ok,
            "content": {media: {"schema": {"type": "string"}}},
        }
    else:
        response = _json(_JSON_OBJECT, ok)
    return {"get": {"summary": summary, "responses": {"200": response, **_errors(*extra)}}}


def _completion_schema() -> dict[str, Any]:
    schema = PhaseCompletion.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    # The model also accepts the production phase names ("phase_3_analytics").
    schema["properties"]["phase"] = {
        "oneOf": [
            {"type": "integer", "minimum": 1, "maximum": 6},
            {"type": "string", "pattern": "^phase_[1-6](_[a-z0-9]+)?$"},
        ]
    }
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def _burrow_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/Burrow{name}"}


def _burrow_schemas() -> dict[str, Any]:
    """Burrow's v3 shapes (linkedin/Burrow core/protocol/evaluator.go, storage.go,
    core/internal/httpserver/structs.go), as phaseflow.streams.web.burrow fills them."""
    nullable_offset = {"oneOf": [_burrow_ref("ConsumerOffset"), {"type": "null"}]}
    partition = {
        "type": "object",
        "required": [
            "topic",
            "partition",
            "owner",
            "client_id",
            "status",
            "start",
            "end",
            "current_lag",
            "complete",
        ],
        "properties": {
            "topic": {"type": "string"},
            "partition": {"type": "integer"},
            "owner": {"type": "string"},
            "client_id": {"type": "string"},
            "status": {"enum": ["OK", "WARN", "STOP", "STALL", "REWIND"]},
            "start": nullable_offset,
            "end": nullable_offset,
            "current_lag": {"type": "integer", "minimum": 0},
            "complete": {"type": "number"},
        },
    }
    group = {
        "type": "object",
        "required": [
            "cluster",
            "group",
            "status",
            "complete",
            "partitions",
            "partition_count",
            "maxlag",
            "totallag",
        ],
        "properties": {
            "cluster": {"type": "string"},
            "group": {"type": "string"},
            "status": {"enum": ["NOTFOUND", "OK", "WARN", "ERR"]},
            "complete": {"type": "number"},
            "partitions": {"type": "array", "items": _burrow_ref("PartitionStatus")},
            "partition_count": {"type": "integer"},
            "maxlag": {"oneOf": [_burrow_ref("PartitionStatus"), {"type": "null"}]},
            "totallag": {"type": "integer", "minimum": 0},
        },
    }
    request = {
        "type": "object",
        "required": ["url", "host"],
        "properties": {"url": {"type": "string"}, "host": {"type": "string"}},
    }

    def envelope(member: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["error", "message", member, "request"],
            "properties": {
                "error": {"type": "boolean"},
                "message": {"type": "string"},
                member: schema,
                "request": _burrow_ref("Request"),
            },
        }

    names = {"type": "array", "items": {"type": "string"}}
    return {
        "BurrowConsumerOffset": {
            "type": "object",
            "required": ["offset", "timestamp", "observedAt", "lag"],
            "properties": {
                "offset": {"type": "integer"},
                "timestamp": {"type": "integer", "description": "Epoch milliseconds."},
                "observedAt": {"type": "integer", "description": "Epoch milliseconds."},
                "lag": {"type": ["integer", "null"]},
            },
        },
        "BurrowPartitionStatus": partition,
        "BurrowConsumerGroupStatus": group,
        "BurrowRequest": request,
        "BurrowConsumerStatusResponse": envelope("status", _burrow_ref("ConsumerGroupStatus")),
        "BurrowClusterList": envelope("clusters", names),
        "BurrowConsumerList": envelope("consumers", names),
        "BurrowError": {
            "type": "object",
            "required": ["error", "message", "request"],
            "properties": {
                "error": {"type": "boolean"},
                "message": {"type": "string"},
                "request": _burrow_ref("Request"),
            },
        },
    }


def _burrow_paths() -> dict[str, Any]:
    cluster = {
        "name": "cluster",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "`PHASEFLOW_LAG_BURROW_CLUSTER`; another name is not found (404).",
    }
    group = {"name": "group", "in": "path", "required": True, "schema": {"type": "string"}}
    unavailable = _errors(503)

    def group_path(summary: str) -> dict[str, Any]:
        return {
            "get": {
                "summary": summary,
                "parameters": [cluster, group],
                "responses": {
                    "200": _json(_burrow_ref("ConsumerStatusResponse"), "Group status."),
                    "404": _json(
                        _burrow_ref("ConsumerStatusResponse"),
                        "Group (or cluster) not known: status NOTFOUND, Burrow's 404.",
                    ),
                    **unavailable,
                },
            }
        }

    return {
        "/v3/kafka": {
            "get": {
                "summary": "Burrow-compatible: the cluster list (this deployment's one name).",
                "responses": {
                    "200": _json(_burrow_ref("ClusterList"), "Cluster list."),
                    **unavailable,
                },
            }
        },
        "/v3/kafka/{cluster}/consumer": {
            "get": {
                "summary": "Burrow-compatible: the consumer groups the lag monitor has data for.",
                "parameters": [cluster],
                "responses": {
                    "200": _json(_burrow_ref("ConsumerList"), "Consumer list."),
                    "404": _json(_burrow_ref("Error"), "Cluster not found."),
                    **unavailable,
                },
            }
        },
        "/v3/kafka/{cluster}/consumer/{group}/lag": group_path(
            "Burrow-compatible: a group's status with every partition."
        ),
        "/v3/kafka/{cluster}/consumer/{group}/status": group_path(
            "Burrow-compatible: a group's status with the partitions that are not OK."
        ),
    }


@cache
def openapi_document() -> dict[str, Any]:
    """The whole document (built once; treat it as read-only)."""
    date = {"type": "string", "format": "date", "examples": ["2026-01-15"]}
    status_path = _open(
        "Per-phase readiness of a game date: expected, done, missing, trigger, deadline.",
        "Readiness per phase.",
        400,
        503,
    )
    status_path["get"]["parameters"] = [
        {"name": "game_date", "in": "path", "required": True, "schema": date}
    ]
    date_query = [
        {
            "name": "date",
            "in": "query",
            "required": False,
            "schema": date,
            "description": "Show this game date; default: the latest 3 in the readiness table.",
        }
    ]
    summary_path = _open(
        "Status summary: phases of recent dates, lag per group with recent samples, dead "
        "letters, recent alerts (what `GET /` and `phaseflow status` show), the worker's "
        "deployment identity and processing guarantee.",
        "Summary.",
        400,
    )
    summary_path["get"]["parameters"] = date_query
    page_path = _open(
        "Status page: the summary as a self-refreshing HTML page.",
        "HTML page.",
        400,
        text=True,
        media="text/html",
    )
    page_path["get"]["parameters"] = date_query
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "phaseflow worker API",
            "version": "1",
            "description": "Reference: docs/http-api.md in the phaseflow repository. Mutating "
            "calls need an API key and are audited.",
        },
        "paths": {
            "/coordinator/start": _mutating(
                "Start predictions for a date.",
                "#/components/schemas/CoordinatorRequest",
                "Started.",
                409,
            ),
            "/coordinator/complete": _mutating(
                "Mark a prediction batch complete.",
                "#/components/schemas/CoordinatorRequest",
                "Completed.",
                409,
            ),
            "/completions": _mutating(
                "Publish a PhaseCompletion.",
                "#/components/schemas/PhaseCompletion",
                "Published to the completions topic.",
            ),
            "/reruns": _mutating(
                "Request reruns of one processor or of a whole phase (reason `manual`).",
                "#/components/schemas/RerunRequest",
                "Rerun requests published.",
            ),
            "/health": _open("Liveness: the process answers.", "Alive."),
            "/ready": _open(
                "Readiness: broker reachable, partitions assigned, lag under the threshold.",
                "Ready.",
                503,
            ),
            "/metrics": _open("Prometheus metrics.", "Text exposition format.", text=True),
            "/status/{game_date}": status_path,
            "/status": summary_path,
            "/": page_path,
            "/lag": _open(
                "Consumer lag: the own group on this worker, and every watched group.", "Lag.", 503
            ),
            "/openapi.json": _open("This document.", "OpenAPI 3.1 document."),
            **_burrow_paths(),
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "schemas": {
                "PhaseCompletion": _completion_schema(),
                "RerunRequest": {
                    "type": "object",
                    "required": ["game_date", "phase"],
                    "additionalProperties": False,
                    "properties": {
                        "game_date": date,
                        "phase": {"type": "integer", "minimum": 1, "maximum": 6},
                        "processor_name": {
                            "type": "string",
                            "description": "Omit to rerun every expected processor of the phase.",
                        },
                    },
                },
                "CoordinatorRequest": {
                    "type": "object",
                    "required": ["game_date"],
                    "additionalProperties": False,
                    "properties": {"game_date": date, "batch_id": {"type": "string"}},
                },
                **_burrow_schemas(),
                "Error": {
                    "type": "object",
                    "required": ["error", "field"],
                    "properties": {
                        "error": {"type": "string"},
                        "field": {"type": ["string", "null"]},
                    },
                },
            },
        },
    }
