"""Apache Kafka in Docker (image ``apache/kafka``, KRaft) through testcontainers.

For machines with a Docker engine (CI runners, laptops). testcontainers' own ``KafkaContainer``
drives Confluent's image (its start script lives under /etc/confluent), so this uses the generic
``DockerContainer`` with the official image's ``KAFKA_*`` environment settings. The host port is
chosen before the start and bound 1:1, because Kafka must advertise the address clients use.
testcontainers and docker are dev dependencies, imported only when a container is started.
"""

from __future__ import annotations

import importlib
import time
from typing import Any, Self

from phaseflow.streams.local import BrokerError, LocalBroker
from phaseflow.streams.local.ports import free_port, metadata_ready, wait_until

DEFAULT_IMAGE = "apache/kafka:4.1.1"
_CLIENT_PORT = 9092
_CONTROLLER_PORT = 9093


class DockerUnavailableError(BrokerError):
    """No Docker engine answers (none installed, daemon down, or no permission)."""


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise BrokerError(
            f"DockerKafka needs {module.partition('.')[0]}: pip install phaseflow[dev]"
        ) from error


def check_docker_engine(timeout: float = 5.0) -> None:
    """Raise DockerUnavailableError with the reason unless a Docker engine answers a ping."""
    docker = _import("docker")
    try:
        client = docker.from_env(timeout=int(timeout))
        try:
            client.ping()
        finally:
            client.close()
    except Exception as error:  # docker raises DockerException, requests errors, OSError, ...
        raise DockerUnavailableError(
            "no Docker engine is reachable (DOCKER_HOST or /var/run/docker.sock): "
            f"{type(error).__name__}: {error}. Use PHASEFLOW_TEST_BROKER=kafka (jars, no "
            "Docker) or tansu instead."
        ) from error


def _environment(host_port: int) -> dict[str, str]:
    return {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://0.0.0.0:{_CLIENT_PORT},"
        f"CONTROLLER://localhost:{_CONTROLLER_PORT}",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{host_port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": f"1@localhost:{_CONTROLLER_PORT}",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "8",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_NUM_PARTITIONS": "8",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "true",
        "KAFKA_NUM_PARTITIONS": "4",
        "KAFKA_HEAP_OPTS": "-Xms256m -Xmx512m",
    }


class DockerKafka(LocalBroker):
    """Single-node Apache Kafka in a container; same interface as ApacheKafka."""

    kind = "docker"
    supports_transactions = True

    def __init__(
        self,
        *,
        image: str = DEFAULT_IMAGE,
        port: int | None = None,
        start_timeout: float = 90.0,
        stop_grace: float = 20.0,
    ) -> None:
        self.image = image
        self._requested_port = port
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self._port: int | None = None
        self._container: Any = None

    def start(self) -> Self:
        if self._container is not None:
            return self
        check_docker_engine()
        container_module = _import("testcontainers.core.container")
        self._port = self._requested_port or free_port()
        container = container_module.DockerContainer(self.image)
        container.with_bind_ports(_CLIENT_PORT, self._port)
        for key, value in _environment(self._port).items():
            container.with_env(key, value)
        container.start()
        self._container = container
        self._wait_ready()
        return self

    def restart(self) -> Self:
        """Docker restart: same container, data and port."""
        self._wrapped().restart(timeout=int(self.stop_grace))
        self._wait_ready()
        return self

    def kill(self) -> None:
        if self._container is not None:
            self._wrapped().kill()

    def stop(self) -> None:
        """Idempotent: stop and remove the container."""
        container, self._container = self._container, None
        if container is not None:
            container.stop()
        self._port = None

    def alive(self) -> bool:
        if self._container is None:
            return False
        wrapped = self._wrapped()
        wrapped.reload()
        return bool(wrapped.status == "running")

    def log_tail(self, lines: int = 40) -> str:
        if self._container is None:
            return "(not started)"
        raw: bytes = self._wrapped().logs(tail=lines)
        return raw.decode(errors="replace")

    def _wrapped(self) -> Any:
        if self._container is None:
            raise BrokerError("the broker has not been started")
        return self._container.get_wrapped_container()

    def _wait_ready(self) -> None:
        started = time.monotonic()
        if not wait_until(
            lambda: metadata_ready(self.bootstrap), timeout=self.start_timeout, alive=self.alive
        ):
            tail = self.log_tail()
            self.stop()
            raise BrokerError(
                f"Kafka container {self.image} on {self.bootstrap} not ready within "
                f"{time.monotonic() - started:.0f} s:\n{tail}"
            )
