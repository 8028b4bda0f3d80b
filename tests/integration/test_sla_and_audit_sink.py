"""SLA breaches and the audit trail in BigQuery, against a real worker, broker and emulator."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as local_time
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import pytest
from google.cloud import bigquery
from prometheus_client.parser import text_string_to_metric_families

from phaseflow.models.audit import audit_record
from phaseflow.models.events import Alert
from phaseflow.sinks.bigquery_audit import AUDIT_TABLE, AuditSink
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.simulation import TopicReader
from phaseflow.streams.web.auth import key_id
from tests.fixtures.polling import poll

pytestmark = pytest.mark.integration

NEW_YORK = ZoneInfo("America/New_York")
API_KEY = "sla-audit-key-4c1d9e"
# Yesterday in the pipeline's zone: its SLAs (12:45 and 13:00) have passed, and it is within the
# readiness agent's SLA lookback (3 days).
GAME_DATE = (datetime.now(NEW_YORK) - timedelta(days=1)).date()
# The run started that morning, before its SLAs.
STARTED_AT = datetime.combine(GAME_DATE, local_time(9, 30), tzinfo=NEW_YORK).astimezone(UTC)


def _sla_breaches(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.kind == "sla_breach"]


def _audit_rows(client: bigquery.Client, table_id: str) -> list[dict[str, Any]]:
    sql = f"SELECT audit_id, key_id, action, summary FROM `{table_id}`"  # noqa: S608
    return [dict(row.items()) for row in client.query(sql, job_retry=None).result(timeout=30)]


async def _poll_audit_rows(client: bigquery.Client, table_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    async def any_rows() -> bool:
        nonlocal rows
        try:
            rows = await asyncio.to_thread(_audit_rows, client, table_id)
        except Exception:  # noqa: BLE001 -- the table appears when the sink has started
            rows = []
        return bool(rows)

    await poll(any_rows, "a row in the audit table", give_up_after=90)
    return rows


async def test_audit_sink_stores_each_record_once_however_often_it_is_delivered(
    bq_client: bigquery.Client, bq_settings: Settings
) -> None:
    records = [
        audit_record(
            key_id=f"key-{n}",
            action="POST /reruns",
            body=b"{}",
            client="127.0.0.1",
            at=STARTED_AT + timedelta(seconds=n),
            summary={"game_date": GAME_DATE.isoformat(), "phase": "3"},
        )
        for n in range(3)
    ]
    async with AuditSink(bq_settings, flush_seconds=60) as sink:
        for record in [*records, records[0]]:  # a re-delivery within one flush
            sink.add(record)
        await sink.flush()
        sink.add(records[1])  # and one in a later flush
        await sink.flush()
        table_id = sink.table_id
    rows = await asyncio.to_thread(_audit_rows, bq_client, table_id)
    assert sorted(row["audit_id"] for row in rows) == sorted(r.audit_id for r in records)
    assert {row["key_id"] for row in rows} == {"key-0", "key-1", "key-2"}


async def test_http_completion_is_audited_in_bigquery_and_a_missed_sla_alerts_once(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    client_for: Callable[[Settings], aiohttp.ClientSession],
    bq_client: bigquery.Client,
    bq_settings: Settings,
) -> None:
    settings = make_settings(
        api_keys=API_KEY,
        bigquery_endpoint=bq_settings.bigquery_endpoint,
        bigquery_project=bq_settings.bigquery_project,
        bigquery_dataset=bq_settings.bigquery_dataset,
        sink_flush_seconds=0.5,
        readiness_tick_seconds=0.5,
    )
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    http = client_for(settings)

    # A scraper's completion that morning, published through the HTTP API.
    body = {
        "processor_name": "nbac_schedule",
        "game_date": GAME_DATE.isoformat(),
        "phase": 1,
        "status": "success",
        "execution_id": f"sla-{GAME_DATE}",
        "timestamp": STARTED_AT.isoformat(),
        "duration_seconds": 12.5,
    }
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with http.post("/completions", data=orjson.dumps(body), headers=headers) as response:
        assert response.status == 202, await response.text()

    # 1. The accepted call is one row of audit_log.
    table_id = f"{bq_client.project}.{settings.bigquery_dataset}.{AUDIT_TABLE}"
    [row] = await _poll_audit_rows(bq_client, table_id)
    assert row["key_id"] == key_id(API_KEY)
    assert row["action"] == "POST /completions"
    assert orjson.loads(row["summary"]) == {
        "game_date": GAME_DATE.isoformat(),
        "phase": "1",
        "processor_name": "nbac_schedule",
    }

    # 2. Phases 5 and 6 were not complete by 12:45 and 13:00: one sla_breach each.
    async with TopicReader(settings, TopicName.ALERTS, Alert) as reader:
        alerts = await reader.read_until(
            lambda found: len(_sla_breaches(found)) >= 2, give_up_after=60, quiet_for=3.0
        )
    breaches = sorted(_sla_breaches(alerts), key=lambda a: a.subject)
    assert [a.subject for a in breaches] == [
        f"{GAME_DATE.isoformat()}:phase_5",
        f"{GAME_DATE.isoformat()}:phase_6",
    ]
    due = datetime.combine(GAME_DATE, local_time(12, 45), tzinfo=NEW_YORK).astimezone(UTC)
    assert breaches[0].details["due_at"] == due.isoformat()

    async with http.get(f"/status/{GAME_DATE.isoformat()}") as response:
        status = await response.json()
    phases = {p["phase"]: p for p in status["phases"]}
    assert phases[5]["sla_breached"] is True
    assert phases[5]["sla_breached_at"] is not None
    assert phases[4]["sla_breached"] is False
    assert status["latency"]["started_at"] == STARTED_AT.isoformat()
    assert status["latency"]["end_to_end_seconds"] is None
    async with http.get("/metrics") as response:
        families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    breached = {
        s.labels["phase"] for s in families["phaseflow_sla_breached"].samples if s.value == 1
    }
    assert breached == {"5", "6"}

    # 3. After a restart the breaches are remembered: no second alert.
    worker.stop(timeout=30)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    async with TopicReader(settings, TopicName.ALERTS, Alert) as reader:
        alerts = await reader.read_until(lambda _: False, give_up_after=0, quiet_for=8.0)
    assert len(_sla_breaches(alerts)) == 2
    assert len(await asyncio.to_thread(_audit_rows, bq_client, table_id)) == 1
