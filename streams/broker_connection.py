"""How to reach the Kafka cluster: the settings every phaseflow Kafka client shares.

The worker's :class:`phaseflow.streams.settings.Settings` and the processors'
:class:`phaseflow.streams.client. ClientSettings` both extend :class:`BrokerConnectionSettings`, so
a connection setting (the Kafka security settings of TLS/SASL belong here when they come) is
declared once and read from the same ``PHASEFLOW_*`` variable by both. This module imports only
pydantic-settings.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX: Final = "PHASEFLOW_"

#: ``producer_idempotence``: ``auto`` asks the broker (InitProducerId) whether it has them.
Idempotence = Literal["auto"] | bool


class BrokerConnectionSettings(BaseSettings):
    """Broker address and topic namespace, read from ``PHASEFLOW_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="ignore", case_sensitive=False
    )

    broker_url: str = Field(
        "kafka://127.0.0.1:9092",
        description="Kafka bootstrap servers, `kafka://host:port` (several joined by `;`).",
    )
    topic_prefix: str = Field(
        "phaseflow", description="Prefix of every topic: `{prefix}.phase-completions` etc."
    )

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        if "://" not in value:
            return f"kafka://{value}"
        return value

    @property
    def bootstrap_servers(self) -> str:
        """The broker URL as aiokafka wants it: `host:port[,host:port]`."""
        return ",".join(
            part.split("://", 1)[-1] for part in self.broker_url.replace(";", ",").split(",")
        )

    def topic(self, name: str) -> str:
        """The full name of a catalog topic, e.g. ``topic("phase-triggers")``."""
        return f"{self.topic_prefix}.{name}"
