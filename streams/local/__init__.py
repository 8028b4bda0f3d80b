"""Local services for tests, benchmarks and the demo: Kafka brokers, the BigQuery emulator, workers.

Nothing here is used by the service itself in production. The shared pieces for brokers live in
this file (stdlib only, so importing any ``phaseflow.streams.local`` module stays cheap):
``ChildProcess`` runs one server process with its output in a log file, and ``BrokerError`` is
what every launcher raises when a broker cannot be started.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["BrokerError", "ChildProcess", "LocalBroker", "cache_root"]

_PACKAGE_PARENT = Path(__file__).resolve().parents[2]


class BrokerError(RuntimeError):
    """A local broker did not start, or died; the message carries the tail of its log."""


class LocalBroker(ABC):
    """What every local broker launcher shares: its address once started, and ``with``."""

    _port: int | None = None

    @abstractmethod
    def start(self) -> Self:
        """Start the broker and wait until it answers."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the broker; safe to call twice."""

    @property
    def port(self) -> int:
        if self._port is None:
            raise BrokerError("the broker has not been started")
        return self._port

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def cache_root() -> Path:
    """Where downloaded artifacts (Kafka jars) are kept between runs.

    ``<repo>/.cache`` in a checkout (it is git-ignored), else ``~/.cache/phaseflow`` for an
    installed package, whose parent directory is site-packages and not ours to write into.
    """
    if (_PACKAGE_PARENT / "pyproject.toml").is_file():
        return _PACKAGE_PARENT / ".cache"
    return Path.home() / ".cache" / "phaseflow"


class ChildProcess:
    """One long-running server process: output appended to ``log_path``, graceful then hard stop.

    The child gets its own session, so a Ctrl-C meant for the parent does not kill it behind
    the parent's back; the parent stops it explicitly (and at interpreter exit, as a safety net
    against orphaned brokers holding ports).
    """

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def returncode(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    def spawn(self, argv: Sequence[str], *, cwd: Path | None = None) -> None:
        if self.alive():
            raise BrokerError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(  # noqa: S603 - argv is built by our launchers
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        atexit.register(self.kill)

    def terminate(self, grace: float) -> None:
        """SIGTERM, then SIGKILL if the process is still there after ``grace`` seconds."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self._forget()

    def kill(self) -> None:
        """SIGKILL, no shutdown at all: what a crashed machine looks like to the clients."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=30)
        self._forget()

    def _forget(self) -> None:
        self._process = None
        atexit.unregister(self.kill)

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` log lines, preceded by the first error lines (the cause usually
        sits far above the shutdown chatter that ends the log)."""
        if not self.log_path.exists():
            return "(no log)"
        all_lines = self.log_path.read_text(errors="replace").splitlines()
        errors = [line for line in all_lines if " ERROR " in line or "FATAL" in line][:10]
        head = ["first errors:", *errors, "...", "last lines:"] if errors else []
        return "\n".join([*head, *all_lines[-lines:]])
