"""The services a benchmark runs against: the embedded broker unless ``PHASEFLOW_BROKER_URL``
names one (benchmarks are scripts, so they read that variable themselves)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from phaseflow.streams.core.settings import Settings
from phaseflow.streams.local.ports import free_port

#: Set by ``python -m bench`` next to ``PHASEFLOW_BROKER_URL``: which kind of broker that is.
BROKER_KIND_ENV: Final = "PHASEFLOW_BENCH_BROKER_KIND"


@dataclass(frozen=True)
class BenchBroker:
    url: str
    kind: str
    #: Settings overrides this broker needs (Tansu: short session timeouts, no idempotence).
    settings: dict[str, Any] = field(default_factory=dict)


def worker_settings(
    broker: BenchBroker, workdir: Path, *, stem: str = "bench", **overrides: Any
) -> Settings:
    """A benchmark worker's settings on ``broker``: topics and groups of its own (a fresh
    ``{stem}-xxxxxx`` prefix), a free web port, data under ``workdir``; ``overrides`` win."""
    prefix = f"{stem}-{uuid.uuid4().hex[:6]}"
    values: dict[str, Any] = {
        "broker_url": broker.url,
        "topic_prefix": prefix,
        "app_id": f"{prefix}-app",
        "data_dir": workdir / "worker",
        "web_port": free_port(),
        "log_level": "WARNING",
        **broker.settings,
        **overrides,
    }
    return Settings(**values)


@contextmanager
def started_broker(kind: str) -> Iterator[tuple[str, str]]:
    """(bootstrap URL, kind) of a broker for benchmarks and demonstrations:
    ``PHASEFLOW_BROKER_URL`` if set, else Apache Kafka from its jars (``kind`` "kafka") or the
    embedded Tansu, stopped on exit."""
    external = os.environ.get("PHASEFLOW_BROKER_URL")
    if external:
        yield external, os.environ.get(BROKER_KIND_ENV, "external")
        return
    if kind == "kafka":
        from tests.support.apache_kafka import ApacheKafka

        with ApacheKafka() as kafka:
            yield kafka.url, "kafka"
        return
    from phaseflow.streams.local.tansu import TansuBroker

    with TansuBroker() as tansu:
        yield tansu.url, "tansu"


@contextmanager
def bench_broker() -> Iterator[BenchBroker]:
    """Tansu (in-process child) unless ``PHASEFLOW_BROKER_URL`` is set."""
    external = os.environ.get("PHASEFLOW_BROKER_URL")
    if external:
        # `python -m bench` starts one broker for every benchmark and says which kind it is,
        # so a Tansu started there still gets Tansu's settings.
        kind = os.environ.get(BROKER_KIND_ENV, "external")
        extra = tansu_settings() if kind == "tansu" else {}
        yield BenchBroker(url=external, kind=kind, settings=extra)
        return
    from phaseflow.streams.local.tansu import TansuBroker

    with TansuBroker() as tansu:
        yield BenchBroker(url=tansu.url, kind="tansu", settings=tansu_settings())


def tansu_settings() -> dict[str, Any]:
    """Tansu has no idempotent producer and holds joins for half the session timeout."""
    from phaseflow.streams.local.tansu import TANSU_FAUST_TUNING

    return {
        "kafka_producer_idempotence": False,
        "kafka_session_timeout_seconds": TANSU_FAUST_TUNING["broker_session_timeout"],
        "kafka_heartbeat_interval_seconds": TANSU_FAUST_TUNING["broker_heartbeat_interval"],
    }


@contextmanager
def bench_bigquery(project: str) -> Iterator[str]:
    """The emulator's endpoint: ``PHASEFLOW_BIGQUERY_ENDPOINT`` or an ephemeral emulator."""
    with bench_bigquery_endpoints(project) as (endpoint, _):
        yield endpoint


@contextmanager
def bench_bigquery_endpoints(project: str) -> Iterator[tuple[str, str | None]]:
    """The emulator's REST and Storage Write (gRPC) endpoints: ``PHASEFLOW_BIGQUERY_ENDPOINT``
    and ``PHASEFLOW_BIGQUERY_WRITE_ENDPOINT`` (None if unset), or an ephemeral emulator's."""
    external = os.environ.get("PHASEFLOW_BIGQUERY_ENDPOINT")
    if external:
        yield external, os.environ.get("PHASEFLOW_BIGQUERY_WRITE_ENDPOINT")
        return
    from phaseflow.streams.local.bigquery_emulator import BigQueryEmulator

    with BigQueryEmulator(project) as emulator:
        yield emulator.endpoint, emulator.write_endpoint
