"""Bounded checks that the services a CLI command needs answer at all, before it starts.

Kafka clients wait for their whole request timeout (30-40 s) on an address that accepts
connections but does not answer, and leave "Unclosed AIOKafkaProducer" noise behind; a TCP
connect and (for Kafka) one Metadata request, each with a few seconds' timeout, tell the user
the same thing at once, naming the address and the setting that holds it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Final
from urllib.parse import urlsplit

from phaseflow.streams.cli_errors import BadInputError, ServiceUnavailableError, bigquery_problem
from phaseflow.streams.core.kafka_clients import KafkaEndpoint, connection_problem
from phaseflow.streams.core.settings import Settings

#: How long one TCP connect may take before the address counts as unreachable.
CONNECT_TIMEOUT_SECONDS: Final = 5.0
_HTTP_PORTS: Final = {"http": 80, "https": 443}


def _connect_error(host: str, port: int, timeout: float) -> str | None:
    """None when ``host:port`` accepts a TCP connection, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as error:
        return error.strerror or str(error)


def _kafka_problem(settings: Settings, address: str, timeout: float) -> str | None:
    """None when ``address`` answers a Metadata request over the configured TLS/SASL."""
    # The probe reports its own reason; aiokafka's per-attempt error log would only repeat it.
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    endpoint = KafkaEndpoint(address, settings.kafka_security)
    try:
        problem = asyncio.run(connection_problem(endpoint, answer_within=timeout))
    finally:
        client_log.setLevel(level)
    return None if problem is None else problem.removeprefix(f"{address}: ")


def _split_host_port(address: str, default_port: int) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    if not host:
        return port, default_port
    return host.strip("[]"), int(port) if port.isdigit() else default_port


def require_broker(settings: Settings, *, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """Raise :class:`ServiceUnavailableError` unless one bootstrap server accepts a connection."""
    reasons: list[str] = []
    for address in settings.bootstrap_servers.split(","):
        host, port = _split_host_port(address, 9092)
        reason = _connect_error(host, port, timeout)
        if reason is None:
            # Something listens; a Metadata answer over the configured TLS/SASL tells a Kafka
            # broker from another service (which would otherwise hold each client for its full
            # request timeout) and names a wrong password, CA or protocol.
            reason = _kafka_problem(settings, f"{host}:{port}", timeout)
            if reason is None:
                return
        reasons.append(f"{host}:{port}: {reason}")
    found = "; ".join(reasons)
    if "PHASEFLOW_" in found:  # the reason names the setting to fix already
        raise ServiceUnavailableError(f"cannot reach the Kafka broker ({found})")
    raise ServiceUnavailableError(
        f"cannot reach the Kafka broker ({found}); start it (make kafka) or set "
        "PHASEFLOW_BROKER_URL"
    )


def require_bigquery(settings: Settings, *, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """Raise :class:`ServiceUnavailableError` unless the BigQuery endpoint accepts a connection.

    Only a configured endpoint (the emulator) is probed; Google's API is reached through
    credentials the client library looks up itself.
    """
    if not settings.bigquery_endpoint:
        return
    url = urlsplit(settings.bigquery_endpoint)
    try:
        explicit_port = url.port
    except ValueError:
        explicit_port = None
        url = url._replace(netloc="")
    if not url.hostname:
        raise BadInputError(
            f"PHASEFLOW_BIGQUERY_ENDPOINT={settings.bigquery_endpoint!r} is not a URL like "
            "http://127.0.0.1:9050; fix or unset it"
        )
    port = explicit_port or _HTTP_PORTS.get(url.scheme, 80)
    reason = _connect_error(url.hostname, port, timeout)
    if reason is not None:
        raise ServiceUnavailableError(bigquery_problem(settings, reason))
