"""``make kafka PORT= DATA_DIR=``: the local Apache Kafka launcher on a chosen port, with a data
directory that survives a stop (runs its own brokers, whatever PHASEFLOW_TEST_BROKER says)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka.admin import NewTopic

from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.kafka_clients import KafkaEndpoint
from phaseflow.streams.local.ports import free_port, port_open
from tests.support.apache_kafka import ApacheKafka


async def _create_topic(bootstrap: str, name: str) -> None:
    admin = kafka_clients.admin(KafkaEndpoint(bootstrap))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()


async def _topics(bootstrap: str) -> set[str]:
    admin = kafka_clients.admin(KafkaEndpoint(bootstrap))
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def test_kept_data_dir_survives_stop_and_keeps_port(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka-data"
    port = free_port()
    first = ApacheKafka(port=port, data_dir=data_dir).start()
    try:
        assert first.bootstrap == f"127.0.0.1:{port}"
        assert port_open("127.0.0.1", port)
        asyncio.run(_create_topic(first.bootstrap, "kept-topic"))
    finally:
        first.stop()
    assert not port_open("127.0.0.1", port)
    log = data_dir / "broker.log"
    assert (data_dir / "kraft-logs").is_dir(), "stop() deleted the kept data directory"
    assert log.stat().st_size > 0
    log_size = log.stat().st_size

    # No port given: the one the data directory was started with; the topic is still there.
    second = ApacheKafka(data_dir=data_dir).start()
    try:
        assert second.port == port
        assert "kept-topic" in asyncio.run(_topics(second.bootstrap))
    finally:
        second.stop()
    assert log.stat().st_size > log_size, "the broker log was not appended to on restart"


def test_without_data_dir_stop_deletes_the_temporary_data(tmp_path: Path) -> None:
    kafka = ApacheKafka(port=free_port()).start()
    data_dir = kafka.data_dir
    try:
        assert data_dir.is_dir()
        assert not kafka.keeps_data
    finally:
        kafka.stop()
    assert not data_dir.exists()
