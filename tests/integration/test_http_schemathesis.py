"""Schemathesis against the worker's own ``/openapi.json``: no generated request gets a 5xx.

Schemathesis reads the OpenAPI document the worker serves and generates requests for every
operation in it, valid ones and (negative mode) ones that break the schema, with and without the
API key. The only 5xx a request may get is the coordinator's documented 503 ("not installed").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess

API_KEY = "schemathesis-key-0123456789"


@pytest.fixture
def api_schema(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
) -> Any:
    settings = make_settings(api_keys=API_KEY, web_rate_limit_per_minute=1_000_000)
    asyncio.run(ensure_topics(settings))
    worker = start_worker(settings)
    worker.wait_ready(120.0)
    base = f"http://127.0.0.1:{settings.web_port}"
    return schemathesis.openapi.from_url(f"{base}/openapi.json")


def operations_strategy(schema: Any) -> Any:
    """Cases for every operation of the document, valid and schema-breaking (negative)."""
    strategies = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies.append(operation.as_strategy(generation_mode=mode))
    assert len(strategies) >= 2 * 8, "the OpenAPI document lost operations"
    return st.one_of(strategies)


@hyp_settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_no_generated_request_gets_a_server_error(api_schema: Any, data: st.DataObject) -> None:
    case = data.draw(operations_strategy(api_schema))
    for headers in ({"Authorization": f"Bearer {API_KEY}"}, {}):  # with and without the key
        response = case.call(headers=headers, timeout=30)
        documented_503 = case.path.startswith("/coordinator/") and response.status_code == 503
        assert response.status_code < 500 or documented_503, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
        )
