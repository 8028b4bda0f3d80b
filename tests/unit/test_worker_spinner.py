"""The worker runs without Faust's terminal spinner (streams/worker.py): with it, a WARNING log
level still turns the root logger to DEBUG, and every aiokafka/Faust debug line is built."""

from __future__ import annotations

import logging
from pathlib import Path

import faust
import pytest

from phaseflow.streams.worker import without_spinner


@pytest.fixture
def restored_logging() -> object:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield root
    root.setLevel(level)
    root.handlers[:] = handlers


def test_a_warning_worker_leaves_debug_lines_off(tmp_path: Path, restored_logging: object) -> None:
    del restored_logging
    app = faust.App("spinner-test", broker="kafka://127.0.0.1:1", datadir=str(tmp_path))
    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    without_spinner(worker)

    worker._setup_logging()

    assert not logging.getLogger("aiokafka.conn").isEnabledFor(logging.DEBUG)
    assert logging.getLogger().level == logging.WARNING


def test_faust_alone_would_turn_debug_on(tmp_path: Path, restored_logging: object) -> None:
    """What without_spinner is for (fails once Faust stops doing this: then drop it)."""
    del restored_logging
    app = faust.App("spinner-test-2", broker="kafka://127.0.0.1:1", datadir=str(tmp_path))
    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)

    worker._setup_logging()

    assert logging.getLogger("aiokafka.conn").isEnabledFor(logging.DEBUG)
