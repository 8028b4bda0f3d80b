"""A TCP proxy in front of a local service that delays or refuses its traffic on demand.

Fault tests put it between the worker and the BigQuery emulator: ``slow(seconds)`` holds every
request chunk that long before passing it on (past the client's timeout: "BigQuery is slow"),
``refuse()`` resets every open connection and every new one ("BigQuery is down"), ``forward()``
passes traffic through again. The worker sees a real network fault on real sockets, and the
service behind the proxy keeps running, with its data.

The proxy runs its own event loop on a daemon thread, so it keeps serving while the caller's
loop is busy or idle (between two tests of a session).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Self

_CHUNK = 65536
_LINGER_ZERO = struct.pack("ii", 1, 0)


class ProxyMode(StrEnum):
    FORWARD = "forward"
    SLOW = "slow"
    REFUSE = "refuse"


@dataclass
class ProxyCounters:
    """What the proxy did to the traffic (read by tests to show a fault really happened)."""

    connections: int = 0
    refused: int = 0
    delayed_chunks: int = 0


class FaultProxy:
    """``with FaultProxy(target_port) as proxy: ... proxy.endpoint``; see the module docstring."""

    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.counters = ProxyCounters()
        self._mode = ProxyMode.FORWARD
        self._delay_seconds = 0.0
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the proxy has not been started")
        return self._port

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``, for an HTTP service such as the BigQuery emulator."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def mode(self) -> ProxyMode:
        return self._mode

    # -- faults ------------------------------------------------------------------------------
    def forward(self) -> None:
        """Pass traffic through unchanged."""
        self._mode = ProxyMode.FORWARD

    def slow(self, seconds: float) -> None:
        """Hold each chunk sent to the service ``seconds`` before passing it on."""
        self._delay_seconds = seconds
        self._mode = ProxyMode.SLOW

    def refuse(self) -> None:
        """Reset every open connection now and every new one until :meth:`forward`."""
        self._mode = ProxyMode.REFUSE
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._reset_all)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        if self._thread is not None:
            return self
        listening = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve, args=(listening,), name="fault-proxy", daemon=True
        )
        self._thread.start()
        if not listening.wait(10):
            raise RuntimeError("the fault proxy did not start listening")
        return self

    def stop(self) -> None:
        """Close the listener and every connection; safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals (on the proxy's loop) -----------------------------------------------------
    def _serve(self, listening: threading.Event) -> None:
        loop = self._loop
        if loop is None:
            raise RuntimeError("start() creates the loop before the thread")
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        sock: socket.socket = self._server.sockets[0]
        self._port = int(sock.getsockname()[1])
        listening.set()
        loop.run_forever()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._reset_all()
        for handler in self._handlers:
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _reset_all(self) -> None:
        for transport in list(self._transports):
            _reset(transport)
        self._transports.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.connections += 1
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)
        if self._mode is ProxyMode.REFUSE:
            self.counters.refused += 1
            _reset(writer.transport)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            _reset(writer.transport)  # the service itself is down: pass that on
            return
        self._transports |= {writer.transport, up_writer.transport}
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, to_service=True),
                self._pipe(up_reader, writer, to_service=False),
            )
        finally:
            self._transports -= {writer.transport, up_writer.transport}

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, to_service: bool
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(_CHUNK):
                if to_service and self._mode is ProxyMode.SLOW:
                    self.counters.delayed_chunks += 1
                    await asyncio.sleep(self._delay_seconds)
                if sink.transport.is_closing():
                    return
                sink.write(data)
                await sink.drain()
        if not sink.transport.is_closing():
            sink.close()


def _reset(transport: asyncio.WriteTransport) -> None:
    """Close with a RST, not a FIN: the peer sees "connection reset", as from a dead server
    (a FIN alone could read as a complete, empty answer)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    transport.abort()
