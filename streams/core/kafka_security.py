"""How phaseflow's Kafka clients authenticate and encrypt: TLS and SASL settings, one model.

:class:`KafkaSecurity` is built from the ``PHASEFLOW_KAFKA_*`` settings of
:class:`phaseflow.streams.core.broker_connection.BrokerConnectionSettings` and turned into
aiokafka's keyword arguments by :mod:`phaseflow.streams.core.kafka_clients`, the one place that
builds clients. Every problem is one line naming the variable to change; the password is a
``SecretStr`` and is never part of a message or a ``repr`` (tests/unit/test_kafka_security.py).

OAUTHBEARER is not offered: aiokafka takes it only as a token-provider *object* written in code
(``AbstractTokenProvider``), and each cloud (MSK IAM, Confluent, Azure) needs its own token code;
a setting cannot express that (docs/security.md).
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import SecretStr

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

_TLS_PROTOCOLS: Final = frozenset({"SSL", "SASL_SSL"})
_SASL_PROTOCOLS: Final = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})


class KafkaSecurityError(ValueError):
    """The security settings cannot work as given; the message is one line naming the variable."""


@dataclass(frozen=True)
class KafkaSecurity:
    """The TLS/SASL part of a Kafka connection. The default is PLAINTEXT (a local broker)."""

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True

    @property
    def uses_tls(self) -> bool:
        return self.protocol in _TLS_PROTOCOLS

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in _SASL_PROTOCOLS

    def problems(self) -> list[str]:
        """What makes these settings unusable, one line each (empty: usable)."""
        found: list[str] = []
        protocol = f"PHASEFLOW_KAFKA_SECURITY_PROTOCOL={self.protocol}"
        if self.uses_sasl:
            if not self.sasl_username:
                found.append(f"{protocol} needs PHASEFLOW_KAFKA_SASL_USERNAME")
            if self.sasl_password is None or not self.sasl_password.get_secret_value():
                found.append(f"{protocol} needs PHASEFLOW_KAFKA_SASL_PASSWORD")
        elif self.sasl_username or self.sasl_password is not None:
            # Credentials that would silently not be sent: the broker would refuse the client
            # with a far less helpful message, or (worse) accept it unauthenticated.
            found.append(
                f"{protocol} sends no SASL credentials, but PHASEFLOW_KAFKA_SASL_USERNAME or "
                "_PASSWORD is set; use SASL_SSL or SASL_PLAINTEXT, or unset them"
            )
        tls_files = {
            "PHASEFLOW_KAFKA_SSL_CAFILE": self.ssl_cafile,
            "PHASEFLOW_KAFKA_SSL_CERTFILE": self.ssl_certfile,
            "PHASEFLOW_KAFKA_SSL_KEYFILE": self.ssl_keyfile,
        }
        given = [name for name, path in tls_files.items() if path is not None]
        if given and not self.uses_tls:
            found.append(
                f"{protocol} does not use TLS, but {', '.join(given)} is set; use SSL or "
                "SASL_SSL, or unset it"
            )
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            found.append("PHASEFLOW_KAFKA_SSL_KEYFILE needs PHASEFLOW_KAFKA_SSL_CERTFILE")
        for name, path in tls_files.items():
            if path is not None and not path.is_file():
                found.append(f"{name}={path}: no such file")
        return found

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context every client of this process shares; None without TLS."""
        if not self.uses_tls:
            return None
        return _ssl_context(
            self.ssl_cafile,
            self.ssl_certfile,
            self.ssl_keyfile,
            check_hostname=self.ssl_check_hostname,
        )

    def aiokafka_options(self) -> dict[str, Any]:
        """aiokafka's security keyword arguments (the same for producer, consumer, admin)."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        if self.uses_sasl:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return options

    def describe(self) -> str:
        """A line for logs and ``/status``: protocol, mechanism and user, never the password."""
        if self.uses_sasl:
            return f"{self.protocol} {self.sasl_mechanism} as {self.sasl_username}"
        return self.protocol


PLAINTEXT: Final = KafkaSecurity()


@functools.cache
def _ssl_context(
    cafile: Path | None,
    certfile: Path | None,
    keyfile: Path | None,
    *,
    check_hostname: bool,
) -> ssl.SSLContext:
    # One context per process and settings: each context parses the CA bundle again, and the
    # worker makes a dozen clients.
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    try:
        if cafile is not None:
            context.load_verify_locations(cafile=str(cafile))
    except (OSError, ssl.SSLError) as error:
        raise KafkaSecurityError(
            f"PHASEFLOW_KAFKA_SSL_CAFILE={cafile}: not a PEM CA certificate ({_reason(error)})"
        ) from None
    if certfile is not None:
        try:
            context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
        except (OSError, ssl.SSLError) as error:
            raise KafkaSecurityError(
                f"PHASEFLOW_KAFKA_SSL_CERTFILE={certfile} / PHASEFLOW_KAFKA_SSL_KEYFILE="
                f"{keyfile}: not a PEM certificate and its key ({_reason(error)})"
            ) from None
    # Hostname checking off still verifies the chain: for brokers reached by an address their
    # certificate does not name (an IP, a tunnel).
    context.check_hostname = check_hostname
    return context


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or getattr(error, "reason", None) or str(error)
