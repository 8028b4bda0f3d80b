"""Apache Kafka (KRaft, one process as broker and controller) run from its Maven jars, no Docker.

The jars are resolved once with Maven from ``kafka-pom.xml`` into ``<cache>/kafka-<version>/libs``
and reused. Without a ``data_dir`` every ``start()`` formats a fresh temporary data directory that
``stop()`` deletes. With a ``data_dir`` the broker's data and log live there and are kept: the
first start formats it, later starts reuse it (same cluster, same topics, same controller port;
the client port may change). ``restart()`` and ``kill()`` keep the data directory and the ports,
so a test can crash and bring back "the same" broker.

``sasl_ssl=True`` adds a SASL_SSL listener (``secured_bootstrap``) next to the plaintext one: a
throwaway CA and broker certificate are made at each start (tests/support/kafka_tls.py; clients
trust ``ca_file``), the SCRAM users (``sasl_users``) are created when the data directory is
formatted (``kafka-storage format --add-scram``); PLAIN accepts the same users. No ACLs.

This is test and development tooling, not part of the installed package.
CLI: ``python -m tests.support.apache_kafka fetch|run [--port P] [--data-dir D] [--version
V] [--sasl-ssl]`` (``scripts/kafka-local`` wraps it).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Self

from phaseflow.streams.local import BrokerError, ChildProcess, LocalBroker, cache_root
from phaseflow.streams.local.ports import (
    free_ports,
    metadata_ready,
    require_free,
    wait_until,
)
from tests.support.kafka_tls import make_broker_tls

# 4.1.1 is what the test suite and the benchmarks were measured on; 4.4.0 also passed the
# broker harness (produce/consume, group join, transactions) with aiokafka 0.14.
DEFAULT_VERSION = "4.1.1"
CONSUMER_GROUP_COMMAND = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
_HERE = Path(__file__).resolve().parent
_POM = _HERE / "kafka-pom.xml"
_LOG_CONFIG = _HERE / "log4j2.properties"
_COMPLETE_MARKER = ".complete"
_HEAP = ("-Xms256m", "-Xmx512m")
_PROPERTIES = "server.properties"
_SECURED = "SASL_SSL"
#: What the secured listener offers; SCRAM users are made at format time for both SHA sizes.
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
DEFAULT_SASL_USER = "phaseflow"


#: For tests that restart the broker: after a kill -9 the restarted broker's registration is
#: refused (DUPLICATE_BROKER_REGISTRATION) until its previous incarnation's session times out at
#: the controller (9 s by default, then the next 2 s registration retry). Not the default: on a
#: loaded machine a 3 s session could fence a broker that is only slow.
RESTART_QUICKLY = {"broker.session.timeout.ms": "3000", "broker.heartbeat.interval.ms": "500"}


def libs_dir(version: str = DEFAULT_VERSION, cache: Path | None = None) -> Path:
    return (cache or cache_root()) / f"kafka-{version}" / "libs"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Two pytest processes may fetch at the same moment; Maven writing the same jars twice in
    # parallel leaves a corrupt cache.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch(version: str = DEFAULT_VERSION, cache: Path | None = None) -> Path:
    """Download the broker's jars (once) and return the ``libs`` directory."""
    libs = libs_dir(version, cache)
    if (libs / _COMPLETE_MARKER).exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is needed once to download the Kafka jars; install it")
    with _file_lock(libs.parent / ".lock"):
        if (libs / _COMPLETE_MARKER).exists():
            return libs
        shutil.rmtree(libs, ignore_errors=True)
        # Maven runs on a copy of the pom so that it never writes target/ into the package.
        work = libs.parent / "maven"
        work.mkdir(parents=True, exist_ok=True)
        pom = work / "pom.xml"
        shutil.copyfile(_POM, pom)
        argv = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
            f"-Dkafka.version={version}",
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not any(libs.glob(f"kafka_2.13-{version}.jar")):
            raise BrokerError(
                f"mvn could not fetch Kafka {version} (exit {done.returncode}):\n"
                f"{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
        (libs / _COMPLETE_MARKER).write_text(version)
    return libs


def _stored_ports(properties: Path) -> tuple[int, int, int | None]:
    """(client port, controller port, SASL_SSL port or None) of a data directory formatted
    earlier."""
    values = dict(line.split("=", 1) for line in properties.read_text().splitlines() if "=" in line)
    try:
        advertised = dict(
            listener.split("://", 1) for listener in values["advertised.listeners"].split(",")
        )
        client = int(advertised["PLAINTEXT"].rpartition(":")[2])
        secured = int(advertised[_SECURED].rpartition(":")[2]) if _SECURED in advertised else None
        controller = int(values["controller.quorum.bootstrap.servers"].rpartition(":")[2])
    except (KeyError, ValueError) as error:
        raise BrokerError(
            f"{properties} is not a broker configuration this launcher wrote"
        ) from error
    return client, controller, secured


def _secured_properties(port: int, keystore: Path, users: Mapping[str, str]) -> dict[str, str]:
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    plain_users = " ".join(f'user_{name}="{password}"' for name, password in users.items())
    prefix = f"listener.name.{_SECURED.lower()}"
    return {
        "sasl.enabled.mechanisms": ",".join((*SCRAM_MECHANISMS, "PLAIN")),
        **{
            f"{prefix}.{mechanism.lower()}.sasl.jaas.config": scram
            for mechanism in SCRAM_MECHANISMS
        },
        f"{prefix}.plain.sasl.jaas.config": (
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
        ),
        # Kafka reads an unencrypted PKCS#8 key and its chain from one PEM file.
        f"{prefix}.ssl.keystore.type": "PEM",
        f"{prefix}.ssl.keystore.location": str(keystore),
        f"{prefix}.ssl.client.auth": "none",
    }


def _server_properties(
    data_dir: Path,
    port: int,
    controller_port: int,
    secured: tuple[int, Path, Mapping[str, str]] | None = None,
) -> str:
    listeners = [f"PLAINTEXT://127.0.0.1:{port}"]
    protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
    if secured is not None:
        listeners.append(f"{_SECURED}://127.0.0.1:{secured[0]}")
        protocols.append(f"{_SECURED}:{_SECURED}")
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "listeners": ",".join((*listeners, f"CONTROLLER://127.0.0.1:{controller_port}")),
        "advertised.listeners": ",".join(listeners),
        # Brokers and the controller talk over the plaintext listeners; only clients use TLS.
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": ",".join(protocols),
        "log.dirs": str(data_dir / "kraft-logs"),
        # One broker: every internal topic must be satisfiable with one replica.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.min.insync.replicas": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # 50 partitions each (the defaults) make the first group join and the first
        # transaction noticeably slower on a laptop, for no benefit on one broker.
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.num.partitions": "8",
        # No 3 s wait for more members before the first rebalance: tests join one at a time.
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        # Matches Tansu (4 partitions on auto-create) and Settings.kafka_topic_partitions.
        "num.partitions": "4",
    }
    if secured is not None:
        props.update(_secured_properties(*secured))
    return "".join(f"{key}={value}\n" for key, value in props.items())


class ApacheKafka(LocalBroker):
    """A single-node Apache Kafka for tests, benchmarks and the demo.

    ``with ApacheKafka() as kafka: ... kafka.bootstrap`` or ``start()``/``stop()``.
    """

    kind = "kafka"
    supports_transactions = True

    def __init__(
        self,
        *,
        port: int | None = None,
        version: str = DEFAULT_VERSION,
        cache: Path | None = None,
        start_timeout: float = 60.0,
        stop_grace: float = 20.0,
        data_dir: Path | None = None,
        sasl_ssl: bool = False,
        sasl_users: Mapping[str, str] | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        self.version = version
        #: server.properties entries set on top of the launcher's own (e.g. RESTART_QUICKLY).
        self.properties = dict(properties or {})
        self.sasl_ssl = sasl_ssl
        #: SCRAM (and PLAIN) users of the SASL_SSL listener: name -> password.
        self.sasl_users = dict(
            sasl_users or {DEFAULT_SASL_USER: secrets.token_urlsafe(16)} if sasl_ssl else {}
        )
        self._cache = cache
        self._requested_port = port
        # A data directory the caller chose is theirs: kept on stop. None: a temporary one.
        self._kept_data_dir = data_dir.resolve() if data_dir is not None else None
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self._port: int | None = None
        self._controller_port: int | None = None
        self._secured_port: int | None = None
        self._data_dir: Path | None = None
        self._child: ChildProcess | None = None

    # -- addresses -------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise BrokerError("the broker has not been started")
        return self._data_dir

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def secured_bootstrap(self) -> str:
        """``127.0.0.1:port`` of the SASL_SSL listener (``sasl_ssl=True``)."""
        if self._secured_port is None:
            raise BrokerError("the broker was not started with a SASL_SSL listener")
        return f"127.0.0.1:{self._secured_port}"

    @property
    def ca_file(self) -> Path:
        """The PEM CA that signed the SASL_SSL listener's certificate (made at each start)."""
        return self.data_dir / "tls" / "ca.pem"

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    # -- tools -----------------------------------------------------------------------------
    @property
    def classpath(self) -> str:
        """``<libs>/*``: Kafka's own command-line tools run with this (see ``tool_command``)."""
        return f"{libs_dir(self.version, self._cache)}/*"

    def tool_command(self, main_class: str, *args: str) -> list[str]:
        """argv running one of Kafka's tools, e.g. ``CONSUMER_GROUP_COMMAND, "--describe", ...``."""
        return [
            _java(),
            "-Xmx256m",
            f"-Dlog4j2.configurationFile={_LOG_CONFIG}",
            "-Dphaseflow.log.level=WARN",
            "-Dphaseflow.log.target=SYSTEM_ERR",
            "-cp",
            self.classpath,
            main_class,
            *args,
        ]

    def run_tool(
        self, main_class: str, *args: str, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.tool_command(main_class, *args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def keeps_data(self) -> bool:
        """True when ``stop()`` leaves the data directory (and its log) in place."""
        return self._kept_data_dir is not None

    def start(self) -> Self:
        """Fetch jars if needed, format a fresh data dir (or reuse the kept one), launch, wait
        for real metadata."""
        if self._child is not None and self._child.alive():
            return self
        # A refused data directory is reported before minutes of downloading jars.
        formatted = self._kept_data_dir is not None and _check_data_dir(self._kept_data_dir)
        fetch(self.version, self._cache)
        if self._kept_data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="phaseflow-kafka-"))
        else:
            self._data_dir = self._kept_data_dir
        properties = self._data_dir / _PROPERTIES
        stored_secured = None
        if formatted:
            stored_port, self._controller_port, stored_secured = _stored_ports(properties)
            self._port = self._requested_port or stored_port
        else:
            requested = [self._requested_port] if self._requested_port else []
            # Client, controller and SASL_SSL ports bound at once, so they differ.
            picked = free_ports(3 - len(requested), besides=requested)
            self._port = self._requested_port or picked.pop()
            self._controller_port = picked.pop()
            stored_secured = picked.pop()
        secured = None
        if self.sasl_ssl:
            self._secured_port = (
                stored_secured or free_ports(1, besides=(self._port, self._controller_port))[0]
            )
            tls = make_broker_tls(self._data_dir / "tls")
            secured = (self._secured_port, tls.keystore_file, self.sasl_users)
        properties.write_text(
            _server_properties(self._data_dir, self._port, self._controller_port, secured)
            + "".join(f"{key}={value}\n" for key, value in self.properties.items())
        )
        if not formatted:
            self._format(properties)
        self._launch()
        return self

    def restart(self) -> Self:
        """Graceful stop and start again on the same data directory and ports."""
        self._require_started()
        if self._child is not None:
            self._child.terminate(self.stop_grace)
        self._launch()
        return self

    def kill(self) -> None:
        """SIGKILL the broker; data dir and ports are kept, so ``restart()`` brings it back."""
        if self._child is not None:
            self._child.kill()

    def stop(self) -> None:
        """Stop (SIGTERM, then SIGKILL after the grace period) and delete the data unless it is
        a kept ``data_dir``. Idempotent."""
        if self._child is not None:
            self._child.terminate(self.stop_grace)
            self._child = None
        if self._data_dir is not None and not self.keeps_data:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
        self._port = None
        self._controller_port = None
        self._secured_port = None

    def alive(self) -> bool:
        return self._child is not None and self._child.alive()

    def log_tail(self, lines: int = 40) -> str:
        return self._child.tail(lines) if self._child is not None else "(not started)"

    # -- internals -------------------------------------------------------------------------
    def _require_started(self) -> None:
        if self._data_dir is None:
            raise BrokerError("restart() needs a broker that was started (and not stopped)")

    def _java_argv(self, main_class: str, *args: str) -> list[str]:
        return [
            _java(),
            *_HEAP,
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={_LOG_CONFIG}",
            "-cp",
            self.classpath,
            main_class,
            *args,
        ]

    def _format(self, properties: Path) -> None:
        argv = self._java_argv(
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            _cluster_id(),
            "-c",
            str(properties),
            *(
                argument
                for name, password in self.sasl_users.items()
                for mechanism in SCRAM_MECHANISMS
                for argument in ("--add-scram", f"{mechanism}=[name={name},password={password}]")
            ),
        )
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BrokerError(f"formatting Kafka storage failed:\n{done.stdout}{done.stderr}")

    def _launch(self) -> None:
        properties = self.data_dir / _PROPERTIES
        require_free("127.0.0.1", self.port, f"cannot start {self.kind}")
        self._child = ChildProcess("kafka", self.log_path)
        self._child.spawn(self._java_argv("kafka.Kafka", str(properties)), cwd=self.data_dir)
        child = self._child
        started = time.monotonic()
        if not wait_until(
            lambda: metadata_ready(self.bootstrap),
            timeout=self.start_timeout,
            alive=child.alive,
        ):
            code = child.returncode()
            tail = child.tail()
            child.kill()
            state = f"exited with {code}" if code is not None else "did not answer metadata"
            raise BrokerError(
                f"Kafka {self.version} on {self.bootstrap} {state} within "
                f"{time.monotonic() - started:.0f} s; log {self.log_path}:\n{tail}"
            )


def _check_data_dir(data_dir: Path) -> bool:
    """True when ``data_dir`` holds a broker this launcher formatted; False when it is new or
    empty. Anything else is refused rather than formatted over."""
    if data_dir.exists() and not data_dir.is_dir():
        raise BrokerError(f"--data-dir {data_dir} is a file, not a directory")
    if (data_dir / _PROPERTIES).is_file() and (data_dir / "kraft-logs").is_dir():
        return True
    if data_dir.is_dir() and any(data_dir.iterdir()):
        raise BrokerError(
            f"--data-dir {data_dir} is not empty and holds no broker started by kafka-local; "
            "choose an empty or new directory"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    return False


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise BrokerError("a Java runtime (17+) is needed to run Apache Kafka locally")
    return java


def _cluster_id() -> str:
    # Kafka wants a base64url UUID without padding (what `kafka-storage random-uuid` prints).
    # One starting with "-" would be read by the storage tool as an option: draw again.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _secured_env(kafka: ApacheKafka) -> str:
    """The settings that reach the SASL_SSL listener, ready to paste into a shell."""
    name, password = next(iter(kafka.sasl_users.items()))
    return (
        f"SASL_SSL listener {kafka.secured_bootstrap}; point phaseflow at it with:\n"
        f"  export PHASEFLOW_BROKER_URL=kafka://{kafka.secured_bootstrap}\n"
        "  export PHASEFLOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL\n"
        "  export PHASEFLOW_KAFKA_SASL_MECHANISM=SCRAM-SHA-512\n"
        f"  export PHASEFLOW_KAFKA_SASL_USERNAME={name}\n"
        f"  export PHASEFLOW_KAFKA_SASL_PASSWORD={password}\n"
        f"  export PHASEFLOW_KAFKA_SSL_CAFILE={kafka.ca_file}\n"
    )


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kafka-local", description="Apache Kafka (KRaft) from Maven jars, no Docker."
    )
    parser.add_argument("command", choices=["fetch", "run"])
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="client port (default: the kept data dir's, else a free one)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the broker's data and log here across stop/start (default: a temporary "
        "directory deleted on stop)",
    )
    parser.add_argument("--version", default=DEFAULT_VERSION, help="Kafka version")
    parser.add_argument(
        "--sasl-ssl",
        action="store_true",
        help="also open a SASL_SSL listener (throwaway CA, SCRAM user 'phaseflow'); prints the "
        "PHASEFLOW_KAFKA_* settings that reach it",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.command == "fetch":
        sys.stdout.write(f"{fetch(args.version)}\n")
        return 0

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGTERM (a supervisor, `timeout`) stops the broker as cleanly as Ctrl-C does. SIGINT is
    # set explicitly because a shell's background job inherits it ignored.
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    kafka = ApacheKafka(
        port=args.port, version=args.version, data_dir=args.data_dir, sasl_ssl=args.sasl_ssl
    )
    started = False
    try:
        kafka.start()
        started = True
        kept = "kept on stop" if kafka.keeps_data else "deleted on stop"
        sys.stdout.write(
            f"Kafka {args.version} ready: {kafka.url} (bootstrap {kafka.bootstrap})\n"
            f"data: {kafka.data_dir} ({kept})\nlog: {kafka.log_path}\nCtrl-C stops it.\n"
        )
        if kafka.sasl_ssl:
            sys.stdout.write(_secured_env(kafka))
        sys.stdout.flush()
        while kafka.alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    except BrokerError as error:
        sys.stderr.write(f"kafka-local: {error}\n")
        return 2
    else:
        sys.stdout.write(f"Kafka exited:\n{kafka.log_tail()}\n")
        return 1
    finally:
        kafka.stop()
        if started and kafka.keeps_data:
            sys.stdout.write(f"data and log kept in {args.data_dir}\n")


if __name__ == "__main__":
    raise SystemExit(main())
