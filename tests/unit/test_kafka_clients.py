"""Nothing but phaseflow.streams.core.kafka_clients constructs an aiokafka client, so TLS/SASL
settings reach every producer, consumer and admin client."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import SecretStr

from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.kafka_clients import KafkaEndpoint
from phaseflow.streams.core.kafka_security import KafkaSecurity

REPO = Path(__file__).resolve().parents[2]
FACTORY = REPO / "streams" / "core" / "kafka_clients.py"
SEARCHED = ("streams", "agents", "sinks", "models", "bench", "tests", "scripts", "phaseflow")
CONSTRUCTION = re.compile(
    r"\b(AIOKafkaProducer|AIOKafkaConsumer|AIOKafkaAdminClient|AIOKafkaClient)\("
)


def _python_files() -> list[Path]:
    files: set[Path] = set()
    for top in SEARCHED:
        root = REPO / top
        if root.is_symlink():  # phaseflow/<pkg> are links to the top-level packages
            continue
        files.update(path.resolve() for path in root.rglob("*.py") if "/.venv/" not in str(path))
    return sorted(files)


def test_no_aiokafka_client_is_constructed_outside_the_factory() -> None:
    files = _python_files()
    assert FACTORY.resolve() in files  # the search does look where the factory is
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in files
        if path != FACTORY.resolve() and path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if CONSTRUCTION.search(line)
    ]
    assert found == [], "build clients with phaseflow.streams.core.kafka_clients:\n" + "\n".join(
        found
    )


def test_the_grep_sees_a_construction() -> None:
    # The pattern must match the way a construction is written, or the test above cannot fail.
    assert CONSTRUCTION.search("    producer = AIOKafkaProducer(bootstrap_servers=x)")
    assert CONSTRUCTION.search("client = AIOKafkaClient(bootstrap_servers=x)")
    assert not CONSTRUCTION.search("consumer: AIOKafkaConsumer | None = None")


SECURED = KafkaSecurity(
    protocol="SASL_PLAINTEXT",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="svc",
    sasl_password=SecretStr("s3cret"),
)


async def test_every_client_kind_gets_the_security_options() -> None:
    endpoint = KafkaEndpoint("127.0.0.1:1", SECURED)
    producer = kafka_clients.producer(endpoint, acks="all")
    consumer = kafka_clients.consumer(endpoint, "t", group_id=None)
    admin = kafka_clients.admin(endpoint)
    low = kafka_clients.client(endpoint)
    try:
        for client in (producer.client, consumer._client, admin._client, low):
            assert client._security_protocol == "SASL_PLAINTEXT"
            assert client._sasl_mechanism == "SCRAM-SHA-512"
            assert client._sasl_plain_username == "svc"
            assert client._sasl_plain_password == SECURED.sasl_password.get_secret_value()
            assert client._bootstrap_servers == "127.0.0.1:1"
    finally:
        await producer.stop()
        await consumer.stop()
        await admin.close()
        await low.close()


def test_plaintext_is_the_default_and_sends_no_credentials() -> None:
    options = KafkaSecurity().aiokafka_options()
    assert options == {"security_protocol": "PLAINTEXT"}
    assert kafka_clients.faust_broker_credentials(KafkaSecurity()) is None
