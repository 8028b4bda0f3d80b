"""Start-up time of a worker on SASL_SSL vs plaintext, the same broker and run.

One Apache Kafka with both listeners (tests/support/apache_kafka.py, ``sasl_ssl=True``); per
sample a fresh deployment (own topic prefix) so every start creates topics, probes the broker
and joins its groups from scratch. Time: process start to the "phaseflow worker ready" line.
Samples alternate (plaintext, SASL_SSL, ...) so machine load hits both alike.

    python -m bench.secured_startup [--samples 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from phaseflow.streams.core.settings import Settings
from phaseflow.streams.local.ports import free_port
from phaseflow.streams.local.worker_process import WorkerProcess
from tests.support.apache_kafka import ApacheKafka

_READY_WITHIN = 300.0


def _settings(kafka: ApacheKafka, work: Path, *, secured: bool) -> Settings:
    prefix = f"bench-{'sasl' if secured else 'plain'}-{uuid.uuid4().hex[:8]}"
    values: dict[str, Any] = {
        "broker_url": f"kafka://{kafka.secured_bootstrap if secured else kafka.bootstrap}",
        "topic_prefix": prefix,
        "data_dir": work / prefix,
        "web_port": free_port(),
        "log_level": "WARNING",
    }
    if secured:
        name, password = next(iter(kafka.sasl_users.items()))
        values |= {
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": name,
            "kafka_sasl_password": password,
            "kafka_ssl_cafile": kafka.ca_file,
        }
    return Settings(**values)


def _start_seconds(settings: Settings, log: Path) -> float:
    worker = WorkerProcess(settings, log)
    worker.start()
    try:
        return worker.wait_ready(_READY_WITHIN)
    finally:
        worker.stop(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.secured_startup")
    parser.add_argument("--samples", type=int, default=3)
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {"plaintext": [], "sasl_ssl": []}
    with tempfile.TemporaryDirectory() as tmp, ApacheKafka(sasl_ssl=True) as kafka:
        work = Path(tmp)
        for index in range(args.samples):
            for label, secured in (("plaintext", False), ("sasl_ssl", True)):
                settings = _settings(kafka, work, secured=secured)
                seconds = _start_seconds(settings, work / f"{label}-{index}.log")
                times[label].append(round(seconds, 2))
                sys.stderr.write(f"{label} sample {index + 1}: {seconds:.2f} s\n")
    summary = {
        label: {"samples": values, "median": statistics.median(values)}
        for label, values in times.items()
    }
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
