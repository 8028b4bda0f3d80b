"""The services a benchmark runs against: the embedded broker unless ``PHASEFLOW_BROKER_URL``
names one (benchmarks are scripts, so they read that variable themselves)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BenchBroker:
    url: str
    kind: str
    #: Settings overrides this broker needs (Tansu: short session timeouts, no idempotence).
    settings: dict[str, Any] = field(default_factory=dict)


@contextmanager
def bench_broker() -> Iterator[BenchBroker]:
    """Tansu (in-process child) unless ``PHASEFLOW_BROKER_URL`` is set."""
    external = os.environ.get("PHASEFLOW_BROKER_URL")
    if external:
        yield BenchBroker(url=external, kind="external")
        return
    from streams.local.tansu import TANSU_FAUST_TUNING, TansuBroker

    with TansuBroker() as tansu:
        yield BenchBroker(
            url=tansu.url,
            kind="tansu",
            settings={
                "producer_idempotence": False,
                "broker_session_timeout_seconds": TANSU_FAUST_TUNING["broker_session_timeout"],
                "broker_heartbeat_interval_seconds": TANSU_FAUST_TUNING[
                    "broker_heartbeat_interval"
                ],
            },
        )
