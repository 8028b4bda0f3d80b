"""How to reach the Kafka cluster: the settings every phaseflow Kafka client shares.

The worker's :class:`phaseflow.streams.core.settings.Settings` and the processors'
:class:`phaseflow.streams.client. ClientSettings` both extend :class:`BrokerConnectionSettings`, so
a connection setting (the address, the prefix, TLS and SASL) is declared once and read from the
same ``PHASEFLOW_*`` variable by both. This module imports only pydantic-settings and
:mod:`phaseflow.streams.core.kafka_security`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from phaseflow.streams.core.kafka_security import KafkaSecurity, SaslMechanism, SecurityProtocol

ENV_PREFIX: Final = "PHASEFLOW_"

#: ``kafka_producer_idempotence``: ``auto`` asks the broker (InitProducerId) whether it has them.
Idempotence = Literal["auto"] | bool


class BrokerConnectionSettings(BaseSettings):
    """Broker address, topic namespace, TLS and SASL, read from ``PHASEFLOW_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="ignore",
        case_sensitive=False,
        # A validation error's text would otherwise quote every input, the SASL password too.
        hide_input_in_errors=True,
    )

    broker_url: str = Field(
        "kafka://127.0.0.1:9092",
        description="Kafka bootstrap servers, `kafka://host:port` (several joined by `;`).",
    )
    topic_prefix: str = Field(
        "phaseflow", description="Prefix of every topic: `{prefix}.phase-completions` etc."
    )

    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT",
        description=(
            "How Kafka clients connect: `PLAINTEXT`, `SSL` (TLS), `SASL_PLAINTEXT` or "
            "`SASL_SSL` (TLS + user/password; managed clusters). docs/security.md."
        ),
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        "PLAIN",
        description="SASL mechanism: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.",
    )
    kafka_sasl_username: str | None = Field(
        None, description="SASL user (API key); needed by the SASL protocols."
    )
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password (API secret); never logged or shown."
    )
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="PEM CA bundle the broker certificate must chain to. Unset: the system's CAs.",
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="PEM client certificate (mutual TLS); may hold the key too."
    )
    kafka_ssl_keyfile: Path | None = Field(
        None, description="PEM private key of `KAFKA_SSL_CERTFILE`, when not in that file."
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True,
        description=(
            "Check that the broker certificate names the host connected to; `false` still "
            "checks the chain (brokers reached by IP or tunnel)."
        ),
    )

    @field_validator(
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # A variable set to "" (a compose file's `VAR:` line, a blanked secret) means unset:
        # as a path it would be the working directory ("PHASEFLOW_KAFKA_SSL_CAFILE=.").
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        if "://" not in value:
            return f"kafka://{value}"
        return value

    @model_validator(mode="after")
    def _security_usable(self) -> Self:
        problems = self.kafka_security.problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def kafka_security(self) -> KafkaSecurity:
        """The TLS/SASL settings as one value (phaseflow.streams.core.kafka_clients uses it)."""
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
            ssl_cafile=self.kafka_ssl_cafile,
            ssl_certfile=self.kafka_ssl_certfile,
            ssl_keyfile=self.kafka_ssl_keyfile,
            ssl_check_hostname=self.kafka_ssl_check_hostname,
        )

    @property
    def bootstrap_servers(self) -> str:
        """The broker URL as aiokafka wants it: `host:port[,host:port]`."""
        return ",".join(
            part.split("://", 1)[-1] for part in self.broker_url.replace(";", ",").split(",")
        )

    def topic(self, name: str) -> str:
        """The full name of a catalog topic, e.g. ``topic("phase-triggers")``."""
        return f"{self.topic_prefix}.{name}"
