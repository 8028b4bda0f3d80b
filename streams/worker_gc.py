"""The worker's garbage collector runs its young collections every 50,000 allocations, not 700.

The readiness agent allocates several short-lived containers per completion (the decoded event,
state copies, records of the outbox) while the worker keeps a large, long-lived heap (Faust's
app, aiokafka's clients, every readiness state it holds). With CPython's default thresholds
(700, 10, 10) the collector ran 1,534 young, 139 middle and 11 full collections over the
40,000-event benchmark backlog, 2.6 s of the worker's 18 s of CPU; with these it ran 10 young
collections in 0.24 s (``python -m bench.readiness throughput``, docs/performance.md). Reference
counting still frees almost everything at once; only reference cycles wait longer, and a young
collection of 50,000 objects is a few milliseconds.
"""

from __future__ import annotations

import gc
from typing import Final

#: (young, middle, full) thresholds: allocations before a young collection, young collections
#: before a middle one, middle ones before a full one.
WORKER_GC_THRESHOLDS: Final = (50_000, 20, 100)


def tune_garbage_collection() -> None:
    """Set the worker process's collector thresholds (WORKER_GC_THRESHOLDS)."""
    gc.set_threshold(*WORKER_GC_THRESHOLDS)
