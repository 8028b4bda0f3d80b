"""phaseflow on Apache Kafka's SASL_SSL listener (SCRAM, a throwaway CA): the worker (ready,
predictions, sink), the processors' client and the CLI work; a wrong password, an unknown CA or
plaintext against the TLS port stop the worker and the CLI at once with one line naming the
setting, and ``/ready`` says the same. The password appears in no output.

The broker is ``secured_broker`` (tests/fixtures/brokers.py): the session's own Apache Kafka, or
one started for these tests, so they run whatever ``PHASEFLOW_TEST_BROKER`` is.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from google.cloud import bigquery

from phaseflow.models.codec import decode, encode
from phaseflow.models.events import PhaseCompletion
from phaseflow.sinks.merge_sql import TARGET_TABLE
from phaseflow.streams.client import ClientSettings, CompletionPublisher
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.settings import Settings, settings_to_env
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.local.ports import free_port
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.seed import seed
from phaseflow.streams.simulation import make_completion
from phaseflow.streams.web.health import BrokerUnreachableError, ReadinessCheck, probe_broker
from tests.fixtures.brokers import SecuredBroker
from tests.fixtures.prediction_keys import expected_prediction_keys
from tests.integration.test_predictions_to_bigquery import phase5_trigger, today, wait_for_keys
from tests.support.kafka_tls import make_broker_tls

ROOT = Path(__file__).resolve().parents[2]
PLAYERS = 20
#: Guards against a hanging command; not a performance assertion.
HANG_GUARD_SECONDS = 120


def _fields(env: dict[str, str]) -> dict[str, Any]:
    """Settings keyword arguments from ``PHASEFLOW_*`` variables."""
    return {name.removeprefix("PHASEFLOW_").lower(): value for name, value in env.items()}


def _settings(secured: SecuredBroker, prefix: str, tmp_path: Path, **overrides: Any) -> Settings:
    """A deployment's settings on the SASL_SSL listener: guarantee and idempotence on auto."""
    values: dict[str, Any] = {
        "topic_prefix": prefix,
        "data_dir": tmp_path / "worker-data",
        "web_port": free_port(),
        **_fields(secured.env()),
        **overrides,
    }
    return Settings(**values)


def _env(**variables: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PHASEFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env | variables


def _phaseflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phaseflow.streams.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=HANG_GUARD_SECONDS,
        check=False,
    )


async def test_worker_on_sasl_ssl_is_ready_predicts_and_sinks(
    *,
    secured_broker: SecuredBroker,
    unique_prefix: str,
    tmp_path: Path,
    start_worker: Callable[[Settings], WorkerProcess],
    bq_client: bigquery.Client,
    bq_settings: Settings,
) -> None:
    settings = _settings(
        secured_broker,
        unique_prefix,
        tmp_path,
        bigquery_endpoint=bq_settings.bigquery_endpoint,
        bigquery_project=bq_settings.bigquery_project,
        bigquery_dataset=bq_settings.bigquery_dataset,
        sink_flush_seconds=0.5,
    )
    day = today()
    await asyncio.to_thread(seed, bq_client, settings.bigquery_dataset, day, players=PLAYERS)
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 180.0)

    async with aiohttp.ClientSession(f"http://127.0.0.1:{settings.web_port}") as http:
        async with http.get("/ready") as response:
            ready, ready_code = await response.text(), response.status
        async with http.get("/status") as response:
            status = await response.text()
    assert ready_code == 200, ready
    assert "exactly_once" in status  # the broker probe ran over SASL_SSL and found transactions
    assert secured_broker.password not in ready + status

    producer = kafka_clients.producer(settings)
    await producer.start()
    try:
        trigger = phase5_trigger(day)
        await producer.send_and_wait(
            settings.topic(TopicName.PHASE_TRIGGERS), encode(trigger), key=trigger.key.encode()
        )
    finally:
        await producer.stop()
    table_id = f"{bq_client.project}.{settings.bigquery_dataset}.{TARGET_TABLE}"
    wanted = expected_prediction_keys(day, players=PLAYERS)
    counts = await wait_for_keys(bq_client, table_id, wanted, give_up_after=180, worker=worker)
    assert set(counts) == wanted
    assert all(n == 1 for n in counts.values())

    # The CLI on the same listener: lag shows the worker's groups, dlq and rerun reach Kafka.
    env = _env(**settings_to_env(settings))
    lag = await asyncio.to_thread(_phaseflow, "lag", env=env)
    assert lag.returncode == 0, lag.stderr
    assert settings.app_id in lag.stdout, lag.stdout
    dlq = await asyncio.to_thread(_phaseflow, "dlq", "list", env=env)
    assert dlq.returncode == 0, dlq.stderr
    rerun = await asyncio.to_thread(
        _phaseflow, "rerun", "--date", day.isoformat(), "--phase", "4", env=env
    )
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.strip(), "rerun must say what it sent"
    outputs = worker.tail(10_000) + "".join(r.stdout + r.stderr for r in (lag, dlq, rerun))
    assert secured_broker.password not in outputs


async def test_processor_client_publishes_over_sasl_ssl(
    secured_broker: SecuredBroker, unique_prefix: str
) -> None:
    env = secured_broker.env(mechanism="SCRAM-SHA-256", topic_prefix=unique_prefix)
    client_settings = ClientSettings(**_fields(env))
    completion = make_completion("player_game_summary", datetime.now(UTC).date(), 3)
    async with CompletionPublisher(client_settings) as publisher:
        await publisher.publish(completion)
        assert publisher.idempotent  # the idempotence probe, too, went over SASL_SSL
    consumer = kafka_clients.consumer(
        client_settings,
        client_settings.topic(TopicName.PHASE_COMPLETIONS),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        got = await asyncio.wait_for(consumer.getone(), timeout=60)
    finally:
        await consumer.stop()
    assert decode(PhaseCompletion, got.value or b"").execution_id == completion.execution_id


def _wrong(secured: SecuredBroker, tmp_path: Path, case: str) -> tuple[dict[str, str], str]:
    """(environment, the setting its failure must name) for one misconfiguration."""
    if case == "wrong password":
        wrong = secured.env(kafka_sasl_password=f"not-{secured.password}")
        return wrong, "PHASEFLOW_KAFKA_SASL_PASSWORD"
    if case == "unknown CA":
        other = make_broker_tls(tmp_path / "other-ca")
        return secured.env(kafka_ssl_cafile=str(other.ca_file)), "PHASEFLOW_KAFKA_SSL_CAFILE"
    assert case == "plaintext on the TLS port"
    env = {
        "PHASEFLOW_BROKER_URL": secured.url,
        "PHASEFLOW_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    }
    return env, "PHASEFLOW_KAFKA_SECURITY_PROTOCOL"


CASES = ["wrong password", "unknown CA", "plaintext on the TLS port"]


@pytest.mark.parametrize("case", CASES)
def test_misconfigured_worker_and_cli_exit_1_with_one_line_naming_the_setting(
    secured_broker: SecuredBroker, unique_prefix: str, tmp_path: Path, case: str
) -> None:
    wrong, setting = _wrong(secured_broker, tmp_path, case)
    env = _env(
        **wrong,
        PHASEFLOW_TOPIC_PREFIX=unique_prefix,
        PHASEFLOW_WEB_PORT=str(free_port()),
        PHASEFLOW_DATA_DIR=str(tmp_path / "data"),
    )
    for args in (["worker"], ["lag"], ["dlq", "list"], ["rerun", "--date", "2026-01-02"]):
        started = time.monotonic()
        run = _phaseflow(*args, env=env)
        took = time.monotonic() - started
        output = run.stdout + run.stderr
        assert run.returncode == 1, (args, output)
        assert "Traceback" not in output, (args, output)
        last = run.stderr.strip().splitlines()[-1]
        assert last.startswith("phaseflow"), (args, output)
        assert setting in last, (args, last)
        assert secured_broker.password not in output
        print(f"{case}: phaseflow {' '.join(args)} exited 1 after {took:.1f} s: {last}")


@pytest.mark.parametrize("case", CASES)
async def test_ready_names_the_setting(
    secured_broker: SecuredBroker, unique_prefix: str, tmp_path: Path, case: str
) -> None:
    wrong, setting = _wrong(secured_broker, tmp_path, case)
    settings = Settings(**_fields(wrong))
    # What GET /ready runs (streams/web/install.py): the probe over the worker's settings.
    check = ReadinessCheck(
        probe=lambda: probe_broker(settings),
        assigned_partitions=lambda: 4,
        recovery_pending=lambda: None,
        lag=dict,
        max_lag_messages=10,
    )
    report = await check.report()
    assert not report.ready
    [reason] = report.reasons
    assert reason.startswith("broker unreachable (")
    assert setting in reason
    assert secured_broker.password not in reason
    with pytest.raises(BrokerUnreachableError):
        await probe_broker(settings)
    await probe_broker(Settings(**_fields(secured_broker.env())))  # the right settings pass
