"""The one place that builds Kafka clients: every producer, consumer, admin and low-level client.

Each gets the connection's bootstrap servers and its TLS/SASL options
(:class:`phaseflow.streams.core.kafka_security.KafkaSecurity`), so a secured cluster needs nothing
at the call sites; Faust's own clients get the same through :func:`faust_broker_credentials`.
tests/unit/test_kafka_clients.py checks that nothing else in the repository constructs an
aiokafka client.

:func:`connection_problem` opens one connection the way the clients do and says, in one line
naming the setting, why it failed: aiokafka's own clients only report "Unable to bootstrap" and
retry, which hides a wrong password or CA behind a generic timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.protocol.metadata import MetadataRequest

from phaseflow.streams.core.kafka_security import PLAINTEXT, KafkaSecurity

#: How long :func:`connection_problem` waits for one connection (TCP, TLS, SASL, Metadata).
CONNECT_TIMEOUT_SECONDS: Final = 10.0
#: OpenSSL's verify code for a certificate that does not name the host.
_HOSTNAME_MISMATCH: Final = 62

StartableClient = TypeVar(
    "StartableClient", AIOKafkaConsumer, AIOKafkaProducer, AIOKafkaAdminClient
)


class KafkaConnection(Protocol):
    """Where the cluster is and how to talk to it: both Settings classes, or a KafkaEndpoint."""

    @property
    def bootstrap_servers(self) -> str: ...

    @property
    def kafka_security(self) -> KafkaSecurity: ...


@dataclass(frozen=True)
class KafkaEndpoint:
    """A :class:`KafkaConnection` from an address alone (tests, local tools, the lag sampler)."""

    bootstrap_servers: str
    kafka_security: KafkaSecurity = PLAINTEXT


def producer(connection: KafkaConnection, **options: Any) -> AIOKafkaProducer:
    """An aiokafka producer of ``connection``; ``options`` are aiokafka's, as they are."""
    return AIOKafkaProducer(**_with_connection(connection, options))


def consumer(connection: KafkaConnection, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer of ``connection`` subscribed to ``topics`` (none: assign later)."""
    return AIOKafkaConsumer(*topics, **_with_connection(connection, options))


def admin(connection: KafkaConnection, **options: Any) -> AIOKafkaAdminClient:
    """An aiokafka admin client of ``connection``."""
    return AIOKafkaAdminClient(**_with_connection(connection, options))


def client(connection: KafkaConnection, **options: Any) -> AIOKafkaClient:
    """aiokafka's low-level client (raw requests: the broker probe, readiness checks)."""
    return AIOKafkaClient(**_with_connection(connection, options))


async def started(client: StartableClient) -> StartableClient:
    """``client`` once its ``start()`` returned; a start that fails closes it before the error
    propagates.

    aiokafka leaves a client whose start failed (broker unreachable: "Unable to bootstrap")
    half-built and open; dropped like that, a consumer or producer is reported at garbage
    collection as "Unclosed AIOKafkaConsumer" (a ResourceWarning and an ERROR log line), and a
    caller that retries every few seconds while the broker is down leaks one per attempt.
    """
    try:
        await client.start()
    except BaseException:
        with contextlib.suppress(Exception):  # the start's error is the one to report
            if isinstance(client, AIOKafkaAdminClient):
                await client.close()
            else:
                await client.stop()
        raise
    return client


def faust_broker_credentials(security: KafkaSecurity) -> Any:
    """Faust's ``broker_credentials`` for ``security`` (None for PLAINTEXT).

    faust-streaming turns these into the same aiokafka options (``credentials_to_aiokafka_auth``):
    SASLCredentials with a context is SASL_SSL, without one SASL_PLAINTEXT.
    """
    # Imported here: the processors' client builds clients too and must not import Faust.
    import faust  # noqa: PLC0415

    context = security.ssl_context()
    if security.uses_sasl:
        password = security.sasl_password
        return faust.SASLCredentials(
            username=security.sasl_username,
            password=password.get_secret_value() if password else None,
            ssl_context=context,
            mechanism=security.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def _with_connection(connection: KafkaConnection, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "bootstrap_servers": connection.bootstrap_servers,
        **connection.kafka_security.aiokafka_options(),
        **options,
    }


async def connection_problem(
    connection: KafkaConnection, *, answer_within: float = CONNECT_TIMEOUT_SECONDS
) -> str | None:
    """None when a bootstrap server answers a Metadata request over ``connection``'s security,
    else one line per server saying why not and which ``PHASEFLOW_*`` setting to check."""
    security = connection.kafka_security
    problems: list[str] = []
    for address in connection.bootstrap_servers.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            async with asyncio.timeout(answer_within):
                conn = await create_conn(
                    host.strip("[]"),
                    int(port),
                    request_timeout_ms=int(answer_within * 1000),
                    **security.aiokafka_options(),
                )
                try:
                    await conn.send(MetadataRequest([]))
                finally:
                    conn.close()
        except Exception as error:  # noqa: BLE001 - each failure becomes its explanation
            problems.append(explain_connect_error(address.strip(), security, error, answer_within))
            continue
        return None
    return "; ".join(problems) or "PHASEFLOW_BROKER_URL names no bootstrap server"


def explain_connect_error(  # noqa: PLR0911 -- one return per kind of failure
    address: str, security: KafkaSecurity, error: BaseException, timeout: float
) -> str:
    """Why a connection to ``address`` failed, as one line naming the setting to check."""
    protocol = f"PHASEFLOW_KAFKA_SECURITY_PROTOCOL={security.protocol}"
    if isinstance(error, ssl.SSLCertVerificationError):
        if error.verify_code == _HOSTNAME_MISMATCH:
            return (
                f"{address}: the broker's TLS certificate does not name this host "
                f"({error.verify_message}); connect by a name it has (PHASEFLOW_BROKER_URL) "
                "or set PHASEFLOW_KAFKA_SSL_CHECK_HOSTNAME=false"
            )
        where = security.ssl_cafile or "the system's CA store"
        return (
            f"{address}: the broker's TLS certificate is not trusted ({error.verify_message}); "
            f"set PHASEFLOW_KAFKA_SSL_CAFILE to the CA that signed it (now: {where})"
        )
    if isinstance(error, ssl.SSLError):
        reason = getattr(error, "reason", None) or error
        return (
            f"{address}: TLS handshake failed ({reason}): is this a TLS listener? check "
            f"{protocol} and PHASEFLOW_BROKER_URL"
        )
    if isinstance(error, kafka_errors.SaslAuthenticationFailed):
        return (
            f"{address}: the broker refused the SASL login of user {security.sasl_username!r} "
            f"with {security.sasl_mechanism}; check PHASEFLOW_KAFKA_SASL_USERNAME, "
            "PHASEFLOW_KAFKA_SASL_PASSWORD and PHASEFLOW_KAFKA_SASL_MECHANISM"
        )
    if isinstance(error, kafka_errors.UnsupportedSaslMechanismError):
        return (
            f"{address}: the broker does not offer PHASEFLOW_KAFKA_SASL_MECHANISM="
            f"{security.sasl_mechanism} ({error}); pick one it offers"
        )
    if isinstance(error, kafka_errors.IllegalSaslStateError):
        return f"{address}: the listener does not use SASL; check {protocol}"
    if isinstance(error, OSError) and not isinstance(error, ConnectionResetError | TimeoutError):
        return (
            f"{address}: cannot connect ({error.strerror or error}); start the broker or set "
            "PHASEFLOW_BROKER_URL"
        )
    # The TCP connection was made, then closed or left unanswered: not Kafka, or typically a
    # plaintext client on a TLS listener (the broker drops what is not a TLS handshake).
    if security.uses_tls:
        hint = f"not Kafka? check PHASEFLOW_BROKER_URL and {protocol}"
    else:
        hint = (
            "not Kafka? check PHASEFLOW_BROKER_URL; a TLS listener needs "
            f"PHASEFLOW_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL (now {security.protocol})"
        )
    if isinstance(error, TimeoutError):
        return f"{address}: no answer to a Kafka request within {timeout:g} s ({hint})"
    return f"{address}: the connection closed during the Kafka handshake: {_reason(error)} ({hint})"


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
