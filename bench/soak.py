"""Soak: one worker for 20 minutes at a steady event rate, with game dates rolling over.

Runs with no arguments (embedded broker and an ephemeral BigQuery emulator unless
``PHASEFLOW_BROKER_URL`` / ``PHASEFLOW_BIGQUERY_ENDPOINT`` are set). The worker's clock runs
``--speed`` times faster than wall time (``PHASEFLOW_CLOCK_SPEED``; 720: a game day every two
minutes) with a registry whose ``retention_days`` is 2, so in 20 minutes ten game dates pass
through every phase (phase 5 for real: coordinator, prediction workers, BigQuery sink) and
expire. A publisher sends completions at a steady rate: each simulated day's new completions
as processors report them, topped up with re-sent (duplicate) completions of the current
date, which the readiness agent must absorb. Every few seconds it records the worker's RSS
(``process_resident_memory_bytes``) and table sizes (``phaseflow_table_entries``) from its
``/metrics``.

Bounded means: after the warm-up (the first ``retention + 2`` simulated days), the last third
of the run has no higher table sizes than the middle third, and RSS grows by less than 10 %
between them. Writes ``docs/soak.png`` (the curves) and ``.cache/soak.json``; prints a table;
the last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from prometheus_client.parser import text_string_to_metric_families

from bench.services import bench_bigquery, bench_broker, worker_settings
from phaseflow.models.events import PhaseCompletion
from phaseflow.streams.core.bigquery_clients import make_bigquery_client
from phaseflow.streams.core.clock import AcceleratedClock
from phaseflow.streams.core.registry import DEFAULT_REGISTRY, load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.seed import seed
from phaseflow.streams.simulation import TriggerReader, make_completion

PROJECT: Final = "bench-soak"
RETENTION_DAYS: Final = 2
SLATE_PLAYERS: Final = 30
SLATE_HISTORY_GAMES: Final = 20
ROOT: Final = Path(__file__).resolve().parents[1]


@dataclass
class Sample:
    seconds: float
    simulated_date: str
    rss_mb: float
    tables: dict[str, int]
    events_published: int
    triggers_seen: int


@dataclass
class SoakState:
    published: int = 0
    triggers: int = 0
    days_started: list[str] = field(default_factory=list)
    phases_fired: dict[str, list[int]] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)


def scrape(port: int) -> tuple[float, dict[str, int]] | None:
    """(RSS in MB, entries per table) from the worker's /metrics; None while it is down."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    rss = 0.0
    tables: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "process_resident_memory_bytes":
                rss = sample.value / 2**20
            elif sample.name == "phaseflow_table_entries":
                tables[sample.labels["table"]] = int(sample.value)
    return rss, tables


class SteadyPublisher:
    """Publishes at ``rate`` events/s: queued new completions first, else a re-sent one."""

    def __init__(self, publisher: CompletionPublisher, rate: float, state: SoakState) -> None:
        self._publisher = publisher
        self._interval = 1.0 / rate
        self._state = state
        self._queue: deque[PhaseCompletion] = deque()
        self._recent: deque[PhaseCompletion] = deque(maxlen=200)

    def enqueue(self, events: Sequence[PhaseCompletion]) -> None:
        self._queue.extend(events)

    async def run(self, until: float) -> None:
        next_at = time.monotonic()
        while time.monotonic() < until:
            if self._queue:
                event = self._queue.popleft()
                self._recent.append(event)
            elif self._recent:
                event = self._recent[int(next_at * 1000) % len(self._recent)]  # a duplicate
            else:
                event = None
            if event is not None:
                await self._publisher.publish(event)
                self._state.published += 1
            next_at += self._interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def drive(
    settings: Settings,
    clock: AcceleratedClock,
    bigquery: Any,
    *,
    minutes: float,
    rate: float,
    state: SoakState,
    worker: WorkerProcess,
) -> None:
    registry = load_registry(settings.registry_path)
    zone = ZoneInfo(settings.pipeline_timezone)
    started = time.monotonic()
    until = started + minutes * 60
    async with CompletionPublisher(settings) as publisher, TriggerReader(settings) as reader:
        steady = SteadyPublisher(publisher, rate, state)
        pump = asyncio.create_task(steady.run(until))
        answered: set[tuple[date, int]] = set()
        current: date | None = None
        next_sample = started
        try:
            while time.monotonic() < until:
                today = clock.now().astimezone(zone).date()
                game_date = today - timedelta(days=1)  # last night's games, as in production
                if game_date != current:
                    current = game_date
                    state.days_started.append(game_date.isoformat())
                    await asyncio.to_thread(
                        seed,
                        bigquery,
                        settings.bigquery_dataset,
                        game_date,
                        players=SLATE_PLAYERS,
                        history_games=SLATE_HISTORY_GAMES,
                    )
                    steady.enqueue(completions(registry, game_date, 1, today, clock))
                    steady.enqueue(completions(registry, game_date, 2, today, clock))
                for trigger in await reader.read(0.5):
                    state.triggers += 1
                    key = (trigger.game_date, trigger.phase)
                    state.phases_fired.setdefault(trigger.game_date.isoformat(), []).append(
                        trigger.phase
                    )
                    if key in answered:
                        continue
                    answered.add(key)
                    if trigger.phase != 5:  # phase 5 is the real coordinator's to complete
                        steady.enqueue(
                            completions(registry, trigger.game_date, trigger.phase, today, clock)
                        )
                if time.monotonic() >= next_sample:
                    next_sample += 5
                    scraped = await asyncio.to_thread(scrape, settings.web_port)
                    if scraped is not None:
                        rss, tables = scraped
                        state.samples.append(
                            Sample(
                                seconds=round(time.monotonic() - started, 1),
                                simulated_date=today.isoformat(),
                                rss_mb=round(rss, 1),
                                tables=tables,
                                events_published=state.published,
                                triggers_seen=state.triggers,
                            )
                        )
                if not worker.alive():
                    raise RuntimeError(f"the worker died:\n{worker.tail()}")
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)


def completions(
    registry: Any, game_date: date, phase: int, today: date, clock: AcceleratedClock
) -> list[PhaseCompletion]:
    """Every expected processor of ``phase`` reporting now (simulated time)."""
    spec = registry.phase(phase)
    return [
        make_completion(name, game_date, phase, at=clock.now())
        for name in sorted(spec.expected_processors(game_date, today))
    ]


def summarize(state: SoakState, warmup_seconds: float) -> dict[str, Any]:
    steady = [s for s in state.samples if s.seconds >= warmup_seconds]
    third = max(1, len(steady) // 3)
    middle, last = steady[third : 2 * third], steady[-third:]
    tables = sorted({name for s in state.samples for name in s.tables})

    def peak(samples: list[Sample], table: str) -> int:
        return max((s.tables.get(table, 0) for s in samples), default=0)

    def mean_rss(samples: list[Sample]) -> float:
        return sum(s.rss_mb for s in samples) / len(samples) if samples else 0.0

    table_peaks = {t: {"middle": peak(middle, t), "last": peak(last, t)} for t in tables}
    rss_growth = (mean_rss(last) / mean_rss(middle) - 1) if mean_rss(middle) else 0.0
    bounded = (
        bool(middle)
        and all(p["last"] <= p["middle"] for p in table_peaks.values())
        and rss_growth < 0.10
    )
    complete_days = [day for day, phases in state.phases_fired.items() if 6 in phases]
    return {
        "minutes": round(state.samples[-1].seconds / 60, 1) if state.samples else 0,
        "events_published": state.published,
        "triggers_seen": state.triggers,
        "simulated_days": len(state.days_started),
        "days_reaching_phase_6": len(complete_days),
        "rss_mb_first": state.samples[0].rss_mb if state.samples else None,
        "rss_mb_middle_mean": round(mean_rss(middle), 1),
        "rss_mb_last_mean": round(mean_rss(last), 1),
        "rss_growth_pct": round(100 * rss_growth, 1),
        "table_peaks": table_peaks,
        "bounded": bounded,
    }


def plot(state: SoakState, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s.seconds / 60 for s in state.samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    top.plot(minutes, [s.rss_mb for s in state.samples], color="tab:red")
    top.set_ylabel("worker RSS (MB)")
    top.set_ylim(bottom=0)
    top.set_title(title, fontsize=10)
    for table in sorted({name for s in state.samples for name in s.tables}):
        bottom.plot(minutes, [s.tables.get(table, 0) for s in state.samples], label=table)
    bottom.set_ylabel("table entries")
    bottom.set_xlabel("minutes (one simulated game day every 2 minutes)")
    bottom.legend(loc="upper left", fontsize=8)
    previous = None
    for s, minute in zip(state.samples, minutes, strict=True):
        if s.simulated_date != previous:
            previous = s.simulated_date
            for axis in (top, bottom):
                axis.axvline(minute, color="0.85", linewidth=0.8, zorder=0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--speed", type=float, default=720.0, help="worker clock speed-up")
    parser.add_argument("--rate", type=float, default=25.0, help="completions per second")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "soak.png")
    parser.add_argument("--json", type=Path, default=ROOT / ".cache" / "soak.json")
    args = parser.parse_args(argv)
    with (
        bench_broker() as broker,
        bench_bigquery(PROJECT) as endpoint,
        tempfile.TemporaryDirectory() as workdir,
    ):
        registry_path = Path(workdir) / "pipeline.toml"
        default = resources.files("phaseflow.streams").joinpath(DEFAULT_REGISTRY).read_text()
        registry_path.write_text(
            default.replace("retention_days = 7", f"retention_days = {RETENTION_DAYS}", 1)
        )
        assert load_registry(registry_path).retention_days == RETENTION_DAYS  # noqa: S101
        settings = worker_settings(
            broker,
            Path(workdir),
            stem="soak",
            registry_path=registry_path,
            clock_speed=args.speed,
            bigquery_endpoint=endpoint,
            bigquery_project=PROJECT,
            bigquery_dataset=f"soak_{uuid.uuid4().hex[:8]}",
        )
        asyncio.run(ensure_topics(settings))
        bigquery = make_bigquery_client(settings)
        state = SoakState()
        clock = AcceleratedClock(args.speed)
        with WorkerProcess(settings, Path(workdir) / "worker.log") as worker:
            worker.wait_ready(timeout=180)
            asyncio.run(
                drive(
                    settings,
                    clock,
                    bigquery,
                    minutes=args.minutes,
                    rate=args.rate,
                    state=state,
                    worker=worker,
                )
            )
        bigquery.close()
    day_seconds = 86_400 / args.speed
    figures = summarize(state, warmup_seconds=(RETENTION_DAYS + 2) * day_seconds)
    figures |= {"broker": broker.kind, "rate_per_second": args.rate, "speed": args.speed}
    title = (
        f"soak: {figures['minutes']} min on {broker.kind}, {args.rate:g} completions/s, "
        f"{figures['simulated_days']} game days, retention {RETENTION_DAYS} days"
    )
    plot(state, args.plot, title)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"figures": figures, "samples": [asdict(s) for s in state.samples]}, indent=1)
    )
    print(title)
    print(f"{'measure':<34}{'value':>14}")
    for name in (
        "events_published",
        "triggers_seen",
        "simulated_days",
        "days_reaching_phase_6",
        "rss_mb_first",
        "rss_mb_middle_mean",
        "rss_mb_last_mean",
        "rss_growth_pct",
    ):
        print(f"{name:<34}{figures[name]!s:>14}")
    for table, peaks in figures["table_peaks"].items():
        print(f"{'peak entries ' + table:<34}{peaks['middle']:>6} -> {peaks['last']:<6}")
    print(f"bounded: {figures['bounded']}  (plot: {args.plot}, samples: {args.json})")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    raise SystemExit(0 if main()["bounded"] else 1)
