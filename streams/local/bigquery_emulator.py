"""The BigQuery emulator (bqemulator 1.4.0) as a real local process, for tests, demos and benches.

It runs as a child process (`python -m bqemulator start ...`) rather than in-process, so that
chaos tests can kill it, keep it down, and bring it back on the same ports, exactly like an
outage of the real API. It is DuckDB-backed: passing here says nothing about BigQuery-only
errors (see TOOLING-NOTES).
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.resources
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import duckdb

from phaseflow.streams.local import ChildProcess
from phaseflow.streams.local.ports import free_ports, port_open

SPATIAL_WHEEL = "duckdb-extension-spatial"
_POLL_SECONDS = 0.05


class EmulatorError(RuntimeError):
    """The emulator could not be prepared, started or stopped."""


def _spatial_installed(conn: duckdb.DuckDBPyConnection) -> bool:
    row = conn.execute(
        "SELECT installed FROM duckdb_extensions() WHERE extension_name = 'spatial'"
    ).fetchone()
    return bool(row and row[0])


def ensure_spatial_extension() -> None:
    """Install DuckDB's `spatial` extension from its PyPI wheel, once per machine.

    bqemulator refuses to start without `spatial` and would download it; offline that fails.
    `INSTALL '<file>'` copies the wheel's build into ~/.duckdb/extensions/v<ver>/<platform>/,
    after which the emulator's own `INSTALL spatial` is a no-op.
    """
    version = f"v{duckdb.__version__}"
    conn = duckdb.connect()
    try:
        if _spatial_installed(conn):
            return
        try:
            package = importlib.resources.files("duckdb_extension_spatial")
        except ModuleNotFoundError as exc:
            raise EmulatorError(
                f"DuckDB's spatial extension is not installed and the `{SPATIAL_WHEEL}` wheel "
                f"is missing: pip install '{SPATIAL_WHEEL}=={duckdb.__version__}'"
            ) from exc
        extension = package / "extensions" / version / "spatial.duckdb_extension"
        if not extension.is_file():
            raise EmulatorError(
                f"`{SPATIAL_WHEEL}` has no build for duckdb {duckdb.__version__} "
                f"(looked for {extension}): install '{SPATIAL_WHEEL}=={duckdb.__version__}'"
            )
        with importlib.resources.as_file(extension) as path:
            # DuckDB takes a quoted string literal here; the path is ours, not user input.
            conn.execute(f"INSTALL '{path}'")
        conn.execute("LOAD spatial")  # fail here, not inside the emulator, if the build is bad
    finally:
        conn.close()


class BigQueryEmulator:
    """One bqemulator process on fixed local ports.

    Ports are chosen once, at construction, so `restart()` (and `stop()` + `start()`) come back
    on the same endpoint. With `persistent=True` data lives in a DuckDB file under `data_dir`
    and survives restarts; ephemeral (the default) keeps it in memory and loses it.
    """

    def __init__(
        self,
        project: str,
        *,
        rest_port: int | None = None,
        grpc_port: int | None = None,
        persistent: bool = False,
        data_dir: Path | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.project = project
        # Both picked at once, so they differ (free_ports).
        picked = free_ports(2, besides=[port for port in (rest_port, grpc_port) if port])
        self.rest_port = rest_port or picked[0]
        self.grpc_port = grpc_port or picked[1]
        self.persistent = persistent
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        # Scratch dir for the log (and the data when none is given); removed by close().
        self._workdir = Path(tempfile.mkdtemp(prefix="bqemulator-"))
        self.data_dir = data_dir or (self._workdir / "data")
        self.log_path = self._workdir / "emulator.log"
        self.last_start_seconds: float | None = None
        # Own session + atexit SIGKILL live in ChildProcess (shared with the broker launchers).
        self._process = ChildProcess("bqemulator", self.log_path)

    @property
    def endpoint(self) -> str:
        """The REST endpoint, as `Settings.bigquery_endpoint` wants it."""
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def write_endpoint(self) -> str:
        """The Storage Write API's gRPC endpoint, as `Settings.bigquery_write_endpoint` wants it."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def running(self) -> bool:
        return self._process.alive()

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "bqemulator", "start",
            "--rest-port", str(self.rest_port),
            "--grpc-port", str(self.grpc_port),
            "--project", self.project,
            "--log-level", "warning",
        ]  # fmt: skip
        if self.persistent:
            cmd += ["--persistent", "--data-dir", str(self.data_dir)]
        return cmd

    def start(self) -> None:
        """Start the process and block until its REST API answers (or raise with its log)."""
        if self.running:
            return
        ensure_spatial_extension()
        for port in (self.rest_port, self.grpc_port):
            # After a long outage something else may hold our port; the readiness probe would
            # then talk to it and call us ready.
            if port_open("127.0.0.1", port):
                raise EmulatorError(f"bqemulator: port {port} is already in use")
        if self.persistent:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        self._process.spawn(self.command())  # the log is appended to across restarts
        try:
            self._wait_ready(began + self.start_timeout)
        except BaseException:
            self.stop()
            raise
        self.last_start_seconds = time.monotonic() - began

    def _wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            code = self._process.returncode()
            if code is not None:
                raise EmulatorError(
                    f"bqemulator exited with code {code} while starting:\n{self.log_tail()}"
                )
            if self._answers():
                return
            time.sleep(_POLL_SECONDS)
        raise EmulatorError(
            f"bqemulator did not answer on {self.endpoint} within {self.start_timeout:g} s:\n"
            f"{self.log_tail()}"
        )

    def _answers(self) -> bool:
        # A real API call (list datasets), not just an open port: uvicorn binds before the
        # DuckDB engine is up.
        conn = http.client.HTTPConnection("127.0.0.1", self.rest_port, timeout=2)
        try:
            conn.request("GET", f"/bigquery/v2/projects/{self.project}/datasets")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def log_tail(self, lines: int = 40) -> str:
        return self._process.tail(lines)

    def stop(self) -> None:
        """SIGTERM, wait `stop_timeout`, then SIGKILL. Idempotent. Data on disk is kept."""
        self._process.terminate(self.stop_timeout)

    def kill(self) -> None:
        """SIGKILL straight away: a crash, not a shutdown (persistent data still survived it)."""
        self._process.kill()

    def restart(self, down_for: float = 0.0) -> None:
        """Stop, stay down `down_for` seconds, start again on the same ports."""
        self.stop()
        if down_for > 0:
            time.sleep(down_for)
        self.start()

    def close(self) -> None:
        """Stop and remove the scratch directory (log, and data unless `data_dir` was given)."""
        self.stop()
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self._workdir)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
