"""The worker's collector thresholds (streams/worker_gc.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from phaseflow.streams.worker_gc import WORKER_GC_THRESHOLDS, tune_garbage_collection


@pytest.fixture
def restored_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_thresholds")
def test_young_collections_are_rarer_than_the_default() -> None:
    gc.set_threshold(700, 10, 10)

    tune_garbage_collection()

    assert gc.get_threshold() == WORKER_GC_THRESHOLDS
    assert WORKER_GC_THRESHOLDS[0] > 700
