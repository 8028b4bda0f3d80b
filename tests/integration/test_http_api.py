"""The worker's HTTP API (docs/http-api.md) against a real worker process and broker."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from phaseflow.models.audit import AuditRecord
from phaseflow.models.codec import decode
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.local.tansu import TANSU_FAUST_TUNING, TansuBroker
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.web.auth import key_id
from tests.integration.test_first_path import PHASE2_REQUIRED, read_triggers

OLD_KEY = "old-key-7f3a9c1e5b2d"
NEW_KEY = "new-key-0b8e4d6a2c9f"
# Yesterday in the pipeline's zone: overnight mode (every required processor expected), and
# inside the readiness retention, so /status still has the state.
GAME_DATE = (datetime.now(ZoneInfo("America/New_York")) - timedelta(days=1)).date()


def completion_body(processor: str, *, execution_id: str | None = None) -> dict[str, Any]:
    return {
        "processor_name": processor,
        "game_date": GAME_DATE.isoformat(),
        "phase": 2,
        "status": "success",
        "record_count": 10,
        "execution_id": execution_id or f"http-{processor}",
        "timestamp": datetime.now(UTC).isoformat(),
    }


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def started(
    start_worker: Callable[[Settings], WorkerProcess], settings: Settings
) -> WorkerProcess:
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    return worker


async def read_audit(settings: Settings, *, want: int, quiet_for: float) -> list[AuditRecord]:
    consumer = kafka_clients.consumer(
        settings,
        settings.topic(TopicName.AUDIT),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[AuditRecord] = []
    try:
        deadline = time.monotonic() + 60
        while len(found) < want and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            found += [
                decode(AuditRecord, r.value) for rs in batches.values() for r in rs if r.value
            ]
        quiet_until = time.monotonic() + quiet_for
        while time.monotonic() < quiet_until:
            batches = await consumer.getmany(timeout_ms=500)
            found += [
                decode(AuditRecord, r.value) for rs in batches.values() for r in rs if r.value
            ]
    finally:
        await consumer.stop()
    return found


async def test_keys_rotation_rate_limit_audit_and_no_key_in_the_log(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    client_for: Callable[[Settings], aiohttp.ClientSession],
) -> None:
    settings = make_settings(api_keys=f"{OLD_KEY},{NEW_KEY}", web_rate_limit_per_minute=3)
    worker = await started(start_worker, settings)
    http = client_for(settings)
    body = orjson.dumps(completion_body("p2_odds_game_lines"))

    # No key and a wrong key: the same 401, byte for byte.
    answers = []
    for headers in ({}, bearer("wrong"), {"X-API-Key": OLD_KEY + "x"}, {"Authorization": OLD_KEY}):
        async with http.post("/completions", data=body, headers=headers) as response:
            answers.append(
                (response.status, await response.read(), response.headers.get("WWW-Authenticate"))
            )
    assert len(set(answers)) == 1, answers
    assert answers[0][0] == 401

    # Both keys of a rotation are valid at once, in either header.
    accepted = []
    old, new = bearer(OLD_KEY), {"X-API-Key": NEW_KEY}
    for headers in (old, new, old, old, old):
        async with http.post("/completions", data=body, headers=headers) as response:
            accepted.append((response.status, response.headers.get("Retry-After")))
    # The old key's bucket holds 3: its 4th call within the minute is refused, with Retry-After.
    assert [status for status, _ in accepted] == [202, 202, 202, 202, 429]
    assert int(accepted[4][1] or 0) >= 1
    async with http.post("/completions", data=body, headers={"X-API-Key": NEW_KEY}) as response:
        assert response.status == 202  # the limit is per key
    async with http.post("/completions", data=b"{not json", headers=bearer(NEW_KEY)) as response:
        assert response.status == 400  # authenticated but not accepted: no audit record

    records = await read_audit(settings, want=5, quiet_for=2.0)
    assert sorted(r.key_id for r in records) == sorted(
        [key_id(OLD_KEY)] * 3 + [key_id(NEW_KEY)] * 2
    )
    assert {r.action for r in records} == {"POST /completions"}
    assert {r.client for r in records} == {"127.0.0.1"}
    digest = hashlib.sha256(body).hexdigest()
    assert {r.body_sha256 for r in records} == {digest}

    log = await asyncio.to_thread(worker.log_path.read_text, errors="replace")
    assert key_id(OLD_KEY) in log  # our own log names the key by id ...
    assert OLD_KEY not in log  # ... and never the key
    assert NEW_KEY not in log


async def test_completions_over_http_fire_a_trigger_and_open_endpoints_answer(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    client_for: Callable[[Settings], aiohttp.ClientSession],
) -> None:
    settings = make_settings(api_keys=NEW_KEY)
    await started(start_worker, settings)
    http = client_for(settings)
    headers = bearer(NEW_KEY)

    async with http.get("/health") as response:
        assert response.status == 200
    async with http.get("/ready") as response:
        assert response.status == 200, await response.text()
        assert (await response.json())["ready"] is True

    bad = [
        (b"{broken", None),
        (b"[1, 2]", None),
        (orjson.dumps({**completion_body("p2_odds_game_lines"), "status": "done"}), "status"),
        (orjson.dumps({**completion_body("p2_odds_game_lines"), "phase": 9}), "phase"),
        (orjson.dumps({**completion_body("nobody"), "phase": 2}), "processor_name"),
        (orjson.dumps({**completion_body("p2_odds_game_lines"), "phase": 3}), "phase"),
    ]
    for payload, field in bad:
        async with http.post("/completions", data=payload, headers=headers) as response:
            assert response.status == 400, payload
            error = await response.json()
            assert error["error"]
            assert error["field"] == field, error

    for name in PHASE2_REQUIRED:
        async with http.post("/completions", json=completion_body(name), headers=headers) as resp:
            assert resp.status == 202, await resp.text()
    triggers = await read_triggers(settings, want=1, quiet_for=1.0)
    assert [(t.game_date, t.phase, t.reason) for t in triggers] == [(GAME_DATE, 3, "ready")]

    async with http.get(f"/status/{GAME_DATE.isoformat()}") as response:
        assert response.status == 200
        phases = {p["phase"]: p for p in (await response.json())["phases"]}
    assert set(PHASE2_REQUIRED) <= set(phases[2]["done"])
    assert phases[2]["trigger"]["trigger_id"] == triggers[0].trigger_id
    async with http.get("/status/2026-02-30") as response:
        assert response.status == 400

    async with http.post(
        "/reruns",
        json={"game_date": GAME_DATE.isoformat(), "phase": 3, "processor_name": "nope"},
        headers=headers,
    ) as response:
        assert response.status == 400
        assert (await response.json())["field"] == "processor_name"
    async with http.post(
        "/reruns",
        json={
            "game_date": GAME_DATE.isoformat(),
            "phase": 2,
            "processor_name": "p2_odds_game_lines",
        },
        headers=headers,
    ) as response:
        assert response.status == 202
        assert len((await response.json())["requests"]) == 1
    async with http.post(
        "/coordinator/start", json={"game_date": GAME_DATE.isoformat()}, headers=headers
    ) as response:
        # The prediction coordinator is installed: the batch is accepted (it then fails on its
        # own, with no BigQuery configured here, and reports a failed phase-5 completion).
        assert response.status == 202
        assert (await response.json())["result"]["batch_id"]
    async with http.get("/lag") as response:
        # The lag monitor is installed in the worker (streams/monitoring/install.py).
        assert response.status == 200
        assert set(await response.json()) == {"total", "partitions", "groups"}

    async with http.get("/metrics") as response:
        assert response.status == 200
        text = await response.text()
    families = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "phaseflow_events_in",
        "phaseflow_triggers_out",
        "phaseflow_dead_letters",
        "phaseflow_sink_flushes",
        "phaseflow_sink_flush_seconds",
        "phaseflow_consumer_lag_messages",
        "phaseflow_group_lag_messages",  # every watched group (streams/monitoring/lag_metrics.py)
        "phaseflow_group_lag_seconds",
        "phaseflow_group_lag_status",
        "phaseflow_phase_duration_seconds",
        "phaseflow_http_requests",
        "phaseflow_table_entries",
        "process_resident_memory_bytes",
    } <= families
    assert 'route="/completions",status="202"' in text
    # The completion above is held in the readiness table of the worker that owns its date.
    assert re.search(r'phaseflow_table_entries\{table="[^"]*readiness[^"]*"\} [1-9]', text), text

    async with http.get("/openapi.json") as response:
        assert (await response.json())["openapi"] == "3.1.0"
    for path in ("/nothing-here", "/table", "/router"):
        async with http.get(path) as response:
            assert response.status == 404, path


async def test_ready_follows_the_broker_down_and_back(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    client_for: Callable[[Settings], aiohttp.ClientSession],
    tmp_path: Path,
) -> None:
    # Its own broker: stopping the session's broker would break every other test.
    own = TansuBroker(log_dir=tmp_path / "own-broker").start()
    try:
        settings = make_settings(
            broker_url=own.url,
            kafka_producer_idempotence=False,
            processing_guarantee="at_least_once",  # Tansu has no transactions
            kafka_session_timeout_seconds=TANSU_FAUST_TUNING["broker_session_timeout"],
            kafka_heartbeat_interval_seconds=TANSU_FAUST_TUNING["broker_heartbeat_interval"],
        )
        await started(start_worker, settings)
        http = client_for(settings)

        async def ready_status() -> tuple[int, Any]:
            async with http.get("/ready") as response:
                return response.status, await response.json()

        async def wait_for(status: int, within: float) -> Any:
            deadline = time.monotonic() + within
            last: tuple[int, Any] = (0, None)
            while time.monotonic() < deadline:
                last = await ready_status()
                if last[0] == status:
                    return last[1]
                await asyncio.sleep(0.25)
            raise AssertionError(f"/ready never answered {status}; last: {last}")

        await wait_for(200, 30)
        own.kill()
        body = await wait_for(503, 15)
        assert any("broker unreachable" in reason for reason in body["reasons"])
        async with http.get("/health") as response:
            assert response.status == 200  # alive, just not ready
        own.restart()
        await ensure_topics(settings)  # Tansu keeps topics in memory only
        await wait_for(200, 90)
    finally:
        own.stop()


# --- fuzz -------------------------------------------------------------------------------------


def _dumps(value: object) -> bytes:
    return json.dumps(value).encode()


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
_field_names = st.sampled_from(
    [
        "processor_name",
        "game_date",
        "phase",
        "status",
        "timestamp",
        "record_count",
        "execution_id",
        "metadata",
        "batch_id",
        "duration_seconds",
    ]
)
_bodies = st.one_of(
    # stdlib json: it also writes integers beyond 64 bits and Infinity, which orjson refuses
    st.dictionaries(_field_names, _json_values, max_size=8).map(_dumps),
    _json_values.map(_dumps),
    st.binary(max_size=64),
)
_header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@pytest.fixture
def fuzz_worker(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
) -> Settings:
    settings = make_settings(api_keys=NEW_KEY, web_rate_limit_per_minute=100_000)
    asyncio.run(ensure_topics(settings))
    worker = start_worker(settings)
    worker.wait_ready(120.0)
    return settings


@hyp_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    call=st.fixed_dictionaries(
        {
            "path": st.sampled_from(
                ["/completions", "/reruns", "/coordinator/start", "/coordinator/complete"]
            ),
            "body": _bodies,
            "auth": st.sampled_from(["none", "good", "bad"]),
            "extra_name": st.sampled_from(
                ["Content-Type", "X-API-Key", "Authorization", "X-Forwarded-For"]
            ),
            "extra_value": _header_text,
        }
    )
)
def test_random_bodies_and_headers_never_get_a_5xx(
    fuzz_worker: Settings, call: dict[str, Any]
) -> None:
    path, body, auth = call["path"], call["body"], call["auth"]
    extra_name, extra_value = call["extra_name"], call["extra_value"]
    headers = {extra_name: extra_value}
    if auth == "good":
        headers["X-API-Key" if extra_name == "Authorization" else "Authorization"] = (
            NEW_KEY if extra_name == "Authorization" else f"Bearer {NEW_KEY}"
        )
    elif auth == "bad":
        headers["Authorization"] = f"Bearer {extra_value}x"
    connection = http.client.HTTPConnection("127.0.0.1", fuzz_worker.web_port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    # 503 is the coordinator's "not installed"; anything else 5xx is a bug.
    allowed_503 = path.startswith("/coordinator/")
    assert response.status < 500 or (response.status == 503 and allowed_503), (
        response.status,
        payload,
    )
    if response.status >= 400:
        assert "error" in orjson.loads(payload)
