"""``phaseflow worker`` as a child process: for the demo, benchmarks and crash tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

from phaseflow.streams.core.settings import Settings, settings_to_env
from phaseflow.streams.worker import READY_LINE


def phaseflow_argv(*arguments: str) -> list[str]:
    """The command line of ``phaseflow <arguments>`` in this interpreter (no console script
    needed, so a worktree's ``PYTHONPATH`` applies)."""
    return [sys.executable, "-m", "phaseflow.streams.cli", *arguments]


def child_environment(settings: Settings) -> dict[str, str]:
    """This process's environment with ``settings`` on top: a child ``phaseflow`` command
    loads the same settings."""
    return {**os.environ, **settings_to_env(settings)}


class WorkerProcess:
    """One worker process with its output in a log file; ``kill()`` is a real kill -9."""

    def __init__(
        self, settings: Settings, log_path: Path, *, restart_on_exit: bool = False
    ) -> None:
        self._settings = settings
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._ready_seen = 0
        # Like systemd's Restart=on-failure: a worker that exits on its own (e.g. faust-streaming
        # crashing the app when its transactional producer is fenced in a rebalance) is started
        # again. stop() and kill() are deliberate and are not undone.
        self._restart_on_exit = restart_on_exit
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        self._stopping.clear()
        if self._restart_on_exit and self._supervisor is None:
            self._supervisor = threading.Thread(target=self._supervise, daemon=True)
            self._supervisor.start()
        self._spawn()

    def _supervise(self) -> None:
        while True:
            time.sleep(0.5)
            process = self._process
            if self._stopping.is_set() or process is None or process.poll() is None:
                continue
            self.restarts += 1
            self._spawn()

    def _spawn(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = child_environment(self._settings)
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(  # noqa: S603 - our own CLI, this interpreter
                phaseflow_argv("worker"),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def ready_count(self) -> int:
        """How many times the worker finished a rebalance (with its tables recovered)."""
        if not self.log_path.exists():
            return 0
        return self.log_path.read_text(errors="replace").count(READY_LINE)

    def wait_ready(self, timeout: float = 90.0, *, after: int = 0) -> float:
        """Block until the worker announced more than ``after`` rebalances; return seconds."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.ready_count() > after:
                return time.monotonic() - started
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"worker exited with {self._process.returncode}:\n{self.tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready after {timeout:.0f} s:\n{self.tail()}")

    def alive(self) -> bool:
        """The current process runs (a supervised worker may be between restarts)."""
        return self._process is not None and self._process.poll() is None

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a graceful stop that flushes and commits), SIGKILL after ``timeout``."""
        self._stopping.set()
        process = self._process
        if process is None or process.poll() is not None:
            return process.returncode if process else None
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(10)

    def kill(self) -> None:
        """kill -9: no flush, no commit, exactly like a crashed machine."""
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    def __enter__(self) -> WorkerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
