"""FaultProxy against a local echo server: forwards, holds traffic, resets connections."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.fixtures.fault_proxy import FaultProxy, ProxyMode


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(1024):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def round_trip(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        return sock.recv(1024)


def test_forwards_then_holds_then_resets_then_forwards_again(echo_port: int) -> None:
    with FaultProxy(echo_port) as proxy:
        assert proxy.mode is ProxyMode.FORWARD
        assert round_trip(proxy.port, b"hello") == b"hello"

        proxy.slow(0.5)
        began = time.monotonic()
        assert round_trip(proxy.port, b"slow") == b"slow"
        assert time.monotonic() - began >= 0.5
        assert proxy.counters.delayed_chunks == 1
        with pytest.raises(TimeoutError):
            round_trip(proxy.port, b"too slow", timeout=0.1)  # a client timeout shorter

        proxy.refuse()
        with pytest.raises(ConnectionError):
            round_trip(proxy.port, b"refused")
        assert proxy.counters.refused >= 1

        proxy.forward()
        assert round_trip(proxy.port, b"back") == b"back"


def test_refuse_resets_connections_that_are_already_open(echo_port: int) -> None:
    with (
        FaultProxy(echo_port) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock,
    ):
        sock.sendall(b"one")
        assert sock.recv(1024) == b"one"
        proxy.refuse()
        with pytest.raises(ConnectionError):
            echo_until_reset(sock)


def echo_until_reset(sock: socket.socket) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the reset arrives asynchronously
        sock.sendall(b"two")
        if not sock.recv(1024):
            raise ConnectionResetError("closed by the proxy")
        time.sleep(0.05)
