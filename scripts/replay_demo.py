"""Record the demo day on a running broker, then replay it under two registries.

    make kafka                                    # another terminal: a local Apache Kafka
    .venv/bin/python scripts/replay_demo.py --broker kafka://127.0.0.1:9092   # repository root

A worker (default registry) runs two overnight dates of the demo's simulation (streams/
simulation.py; the simulation answers phase 5 itself, no BigQuery needed):

* the day before yesterday: the demo day as ``phaseflow demo`` runs it, every processor reports;
* yesterday: the same day, but phase 4's ``player_composite_factors`` never reports.

The worker runs on for ``--minutes`` (default 11: past a 10-minute tier), then stops, and both
dates are replayed from the log with ``phaseflow replay`` under the default registry and under
docs/examples/phase4-10m-tier.toml. The replay commands are printed too, to run again on the
same log (topic prefix ``--prefix``, a fresh one per run unless given).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.local.ports import free_port
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.replay import run_replay
from phaseflow.streams.simulation import simulate_day

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REGISTRY = REPO / "streams" / "pipeline.toml"
TEN_MINUTE_TIER = REPO / "docs" / "examples" / "phase4-10m-tier.toml"
SILENT = frozenset({"player_composite_factors"})


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True, help="e.g. kafka://127.0.0.1:9092")
    parser.add_argument("--prefix", default=f"replay-demo-{uuid.uuid4().hex[:6]}")
    parser.add_argument("--minutes", type=float, default=11.0, help="how long the worker runs")
    return parser.parse_args()


def record(settings: Settings, minutes: float, workdir: Path) -> tuple[date, date]:
    """Run the worker over the two dates for ``minutes``; return them."""
    registry = load_registry(None)
    asyncio.run(ensure_topics(settings))
    today = datetime.now(UTC).astimezone(ZoneInfo(settings.pipeline_timezone)).date()
    full_day, late_day = today - timedelta(days=2), today - timedelta(days=1)
    started = time.monotonic()
    with WorkerProcess(settings, workdir / "worker.log") as worker:
        worker.wait_ready(timeout=180)
        full = asyncio.run(simulate_day(settings, registry, full_day, today=today))
        print(f"{full_day}: phases started {[t.phase for t in full.triggers]}", flush=True)
        late = asyncio.run(
            simulate_day(settings, registry, late_day, today=today, give_up_after=30, silent=SILENT)
        )
        print(
            f"{late_day}: phases started {[t.phase for t in late.triggers]} "
            f"({', '.join(sorted(SILENT))} never reports)",
            flush=True,
        )
        remaining = minutes * 60 - (time.monotonic() - started)
        print(f"worker runs {max(remaining, 0) / 60:.1f} more minute(s)", flush=True)
        time.sleep(max(remaining, 0))
    return full_day, late_day


def main() -> int:
    args = _parse()
    with tempfile.TemporaryDirectory(prefix="phaseflow-replay-demo-") as workdir:
        settings = Settings(
            broker_url=args.broker,
            topic_prefix=args.prefix,
            data_dir=Path(workdir) / "worker",
            web_port=free_port(),
            log_level="WARNING",
        )
        first, last = record(settings, args.minutes, Path(workdir))
    for registry in (DEFAULT_REGISTRY, TEN_MINUTE_TIER):
        shown = registry.relative_to(REPO)
        print(
            f"\n$ PHASEFLOW_BROKER_URL={args.broker} PHASEFLOW_TOPIC_PREFIX={args.prefix} "
            f"phaseflow replay --date {first} --to {last} --registry {shown}",
            flush=True,
        )
        run_replay(settings, start=first, end=last, registry_path=shown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
