"""Free local ports, and a readiness check that asks a Kafka broker a real question."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterable

from phaseflow.streams.local import BrokerError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it; a race is possible but rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int, host: str = "127.0.0.1", *, besides: Iterable[int] = ()) -> list[int]:
    """``count`` distinct TCP ports nobody listens on right now, none of ``besides``. They are
    bound all at once: one ``free_port()`` after another can get the same port back (the OS
    hands out a just-released port again), and a broker given one port for two listeners
    refuses to start."""
    taken = set(besides)
    sockets: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
            if port not in taken:
                taken.add(port)
                ports.append(port)
    finally:
        for sock in sockets:
            sock.close()
    return ports


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


async def _metadata_brokers(bootstrap: str, request_seconds: float) -> int:
    # aiokafka is imported here so that importing phaseflow.streams.local stays cheap.
    from phaseflow.streams.core import kafka_clients  # noqa: PLC0415

    timeout_ms = max(int(request_seconds * 1000), 500)
    client = kafka_clients.client(
        kafka_clients.KafkaEndpoint(bootstrap),
        request_timeout_ms=timeout_ms,
        connections_max_idle_ms=timeout_ms + 1000,
    )
    try:
        # bootstrap() sends a MetadataRequest: a TCP accept alone is not "ready" (Kafka accepts
        # connections before its metadata is published).
        await client.bootstrap()
        return len(client.cluster.brokers())
    finally:
        await client.close()


def metadata_ready(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when the broker answers a Metadata request listing at least one broker.

    Runs its own event loop in a thread, so it works from sync code and from inside a running
    loop (a pytest-asyncio session, say) alike.
    """
    host, _, port = bootstrap.rpartition(":")
    # A closed port is the common case while a broker boots; checking it first keeps aiokafka
    # from logging a connection error per poll.
    if not port_open(host, int(port)):
        return False
    result: list[int] = []

    def probe() -> None:
        try:
            result.append(
                asyncio.run(asyncio.wait_for(_metadata_brokers(bootstrap, timeout), timeout + 1))
            )
        except Exception:  # noqa: BLE001 - any failure only means "not ready yet"
            result.append(0)

    thread = threading.Thread(target=probe, name="kafka-metadata-probe", daemon=True)
    thread.start()
    thread.join(timeout + 3)
    return bool(result and result[0] > 0)


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    alive: Callable[[], bool],
    interval: float = 0.2,
) -> bool:
    """Poll ``ready`` until it is true (True), ``alive`` turns false, or time runs out (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        if ready():
            return True
        time.sleep(interval)
    return False


def require_free(host: str, port: int, what: str) -> None:
    """Refuse to launch on a port something already answers on: the readiness probe would
    otherwise talk to that other broker and call ours ready while it fails to bind."""
    if port_open(host, port):
        raise BrokerError(f"{what}: port {host}:{port} is already in use")
