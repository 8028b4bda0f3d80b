"""The peer bench/readiness.py compares the readiness agent with: a Quix Streams 3.x app that
reads the same completion topic and does a read-modify-write of a per-date dict in its State
(RocksDB + changelog topic, Quix's defaults), start to done.

Run by bench/readiness.py as ``python -m bench.quix_peer`` with its settings in the
environment: ``QUIX_BROKER`` (host:port), ``QUIX_TOPIC``, ``QUIX_COUNT``, ``QUIX_GUARANTEE``
(``at-least-once`` / ``exactly-once``), ``QUIX_GROUP`` and ``QUIX_STATE_DIR``. Prints
``quix events/s <n>`` and exits; a run that handled fewer records prints nothing and fails.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from quixstreams import Application, State


def main() -> int:
    count = int(os.environ["QUIX_COUNT"])
    app = Application(
        broker_address=os.environ["QUIX_BROKER"],
        consumer_group=os.environ["QUIX_GROUP"],
        auto_offset_reset="earliest",
        processing_guarantee=os.environ["QUIX_GUARANTEE"],  # type: ignore[arg-type]
        state_dir=os.environ["QUIX_STATE_DIR"],
        loglevel="WARNING",
    )
    topic = app.topic(os.environ["QUIX_TOPIC"], value_deserializer="json")
    progress = {"seen": 0}

    def record(completion: dict[str, Any], state: State) -> None:
        # The same question the readiness state answers first: which processors of which phase
        # reported for this date (the message key), one dict per date.
        seen = state.get("processors", {})
        phase = seen.setdefault(str(completion["phase"]), {})
        phase[completion["processor_name"]] = completion["status"]
        state.set("processors", seen)
        progress["seen"] += 1

    app.dataframe(topic).update(record, stateful=True)
    started = time.perf_counter()
    app.run(count=count, collect=False)  # returns after the final checkpoint of `count` records
    elapsed = time.perf_counter() - started
    if progress["seen"] < count:
        print(f"quix peer handled {progress['seen']} of {count} records", file=sys.stderr)
        return 1
    print(f"quix events/s {count / elapsed:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
