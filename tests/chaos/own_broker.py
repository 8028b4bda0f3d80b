"""Settings of a chaos test's worker on a broker of its own (the test stops and kills it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from phaseflow.streams.core.settings import Settings
from phaseflow.streams.local.ports import free_port


def worker_settings(broker_url: str, prefix: str, data_dir: Path, **overrides: Any) -> Settings:
    """The chaos worker's settings: its own topics, group and port on ``broker_url``,
    ``exactly_once`` with idempotent producers (Apache Kafka) and INFO logs; ``overrides`` win."""
    values: dict[str, Any] = {
        "broker_url": broker_url,
        "topic_prefix": prefix,
        "app_id": f"{prefix}-app",
        "data_dir": data_dir,
        "web_port": free_port(),
        "kafka_producer_idempotence": True,
        "processing_guarantee": "exactly_once",
        "log_level": "INFO",
        **overrides,
    }
    return Settings(**values)
