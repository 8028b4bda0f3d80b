"""The launcher's options for ``make kafka`` without starting a broker."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from phaseflow.streams.local import BrokerError
from tests.support.apache_kafka import ApacheKafka, main

REPO = Path(__file__).resolve().parents[2]


def _make_kafka_command(*variables: str) -> str:
    # make is the project's entry point (`make setup`, `make test`): a machine without it
    # cannot run this suite at all, so its absence is a failure here, not a skip.
    make = shutil.which("make")
    assert make is not None, "make is not installed"
    done = subprocess.run(
        # --no-print-directory: run from `make test`, make would add "Leaving directory" lines.
        [make, "--no-print-directory", "-n", "-o", ".venv/bin/.installed", "kafka", *variables],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def test_make_kafka_defaults_to_9092_and_a_temporary_data_dir() -> None:
    assert _make_kafka_command() == "scripts/kafka-local run --port 9092"


def test_make_kafka_passes_port_and_data_dir() -> None:
    command = _make_kafka_command("PORT=19092", "DATA_DIR=/tmp/kafka data")
    assert command == 'scripts/kafka-local run --port 19092 --data-dir "/tmp/kafka data"'


def test_a_non_empty_foreign_directory_is_refused_not_formatted(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    # An empty cache: the check must come before any jar is needed.
    kafka = ApacheKafka(data_dir=tmp_path, cache=tmp_path / "no-jars")
    with pytest.raises(BrokerError, match="not empty"):
        kafka.start()
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_cli_reports_a_refused_data_dir_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["run", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kafka-local: --data-dir ")
    assert len(err.strip().splitlines()) == 1
