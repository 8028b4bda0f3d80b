"""``python -m bench``: every benchmark side by side on one broker and one BigQuery emulator.

Starts one broker (the embedded Tansu, or ``--broker kafka`` for Apache Kafka from its jars)
and one BigQuery emulator, unless ``PHASEFLOW_BROKER_URL`` / ``PHASEFLOW_BIGQUERY_ENDPOINT`` name
running ones, then runs each benchmark as its own process pointed at them (each benchmark keeps
its own Faust app and event loop; the processes run one after the other, so they never compete
for the two cores). Each benchmark's own table is shown as it runs; then one table of every ratio
and latency, and as the last line one JSON object holding every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any, Final

from bench.readiness import latency_label, target_p99_ms
from bench.services import BROKER_KIND_ENV, bench_bigquery_endpoints, started_broker
from phaseflow.streams.text_table import aligned_rows

#: Module names under bench/, in the order they run.
BENCHMARKS: Final = ("readiness", "history_loading", "sink", "predictions_e2e")
PROJECT: Final = "bench-report"


def _last_json_line(output: str) -> dict[str, Any]:
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            figures: dict[str, Any] = json.loads(line)
            return figures
    raise ValueError("the benchmark printed no JSON line")


def run_one(name: str, env: dict[str, str]) -> dict[str, Any]:
    """Run ``bench.<name>`` in its own process; echo its output; return its JSON figures."""
    print(f"\n=== bench.{name}", flush=True)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    print(done.stdout, end="", flush=True)
    if done.returncode not in (0, 1):  # 1: ran, but missed a target
        sys.stderr.write(done.stderr[-4000:])
        raise RuntimeError(f"bench.{name} failed with exit code {done.returncode}")
    figures = _last_json_line(done.stdout)
    figures["wall_seconds"] = round(time.monotonic() - started, 1)
    return figures


def _e2e_main_run(figures: dict[str, Any]) -> dict[str, Any]:
    runs: list[dict[str, Any]] = figures.get("runs", [])
    issue = figures.get("issue_predictions")
    for run in runs:
        if run.get("predictions") == issue:
            return run
    return runs[0] if runs else {}


def summary_rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(measure, phaseflow, compared with, target) rows of the combined table."""
    rows: list[tuple[str, str, str, str]] = []
    readiness = results.get("readiness")
    if readiness:
        rows.append(
            (
                "readiness agent vs raw aiokafka (events/s)",
                f"{readiness['agent_events_per_s']:,} vs {readiness['raw_events_per_s']:,}",
                f"ratio {readiness['ratio']}",
                ">= 0.3",
            )
        )
        rows.append(
            (
                "readiness agent vs bare Faust agent (no work)",
                f"{readiness['agent_events_per_s']:,} vs {readiness['faust_noop_events_per_s']:,}",
                f"ratio {readiness['ratio_to_faust_noop']}",
                ">= 0.7",
            )
        )
        noop_eos = readiness.get("faust_noop_exactly_once_events_per_s")
        if noop_eos is not None:
            rows.append(
                (
                    "readiness agent vs bare Faust agent, exactly_once",
                    f"{readiness['agent_events_per_s']:,} vs {noop_eos:,}",
                    f"ratio {readiness['ratio_to_faust_noop_exactly_once']}",
                    "",
                )
            )
        rows.append(
            (
                "readiness agent vs bare Faust + 1 table write",
                (
                    f"{readiness['agent_events_per_s']:,} vs "
                    f"{readiness['faust_table_write_events_per_s']:,}"
                ),
                f"ratio {readiness['ratio_to_faust_table_write']}",
                "",
            )
        )
        no_stream = readiness.get("faust_without_stream_events_per_s")
        if no_stream is not None:
            rows.append(
                (
                    "Faust consumer without its stream (channel queue)",
                    f"{no_stream:,} events/s",
                    f"{no_stream / readiness['faust_noop_events_per_s']:.2f}x the bare agent",
                    "",
                )
            )
        for guarantee, rate in readiness["quix_events_per_s"].items():
            rows.append(
                (
                    f"readiness agent vs Quix Streams, {guarantee}",
                    f"{readiness['agent_events_per_s']:,} vs {rate:,}",
                    f"ratio {readiness['ratio_to_quix'][guarantee]}",
                    "",
                )
            )
        backfill = readiness["backfill"]
        rows.append(
            (
                f"backfill {backfill['completions']:,} completions, {backfill['dates']} dates",
                f"settled in {backfill['settled_seconds']} s",
                f"{backfill['repeated_triggers']} repeated triggers",
                "1 trigger per (date, phase)",
            )
        )
        target = target_p99_ms(readiness["broker"])
        for run in readiness["latency"]:
            rows.append(
                (
                    f"trigger ms p50/p99/max, {latency_label(run)}",
                    f"{run['p50_ms']} / {run['p99_ms']} / {run['max_ms']}",
                    f"{run['samples']} samples",
                    f"p99 <= {target:g}",
                )
            )
    history = results.get("history_loading")
    if history:
        rows.append(
            (
                "history: batched vs per-player (queries)",
                f"{history['batched_queries']} vs {history['per_player_queries']}",
                f"{history['query_ratio']}x fewer",
                ">= 50x",
            )
        )
        rows.append(
            (
                "history: batched vs per-player (seconds)",
                f"{history['batched_seconds']} vs {history['per_player_seconds']}",
                f"{history['time_ratio']}x less time",
                ">= 20x",
            )
        )
    sink = results.get("sink")
    if sink:
        rows.append(
            (
                "sink vs one insert per row (rows/s)",
                f"{sink['sink_rows_per_second']:,} vs {sink['per_row_rows_per_second']:,}",
                f"{sink['ratio']}x",
                ">= 100x",
            )
        )
        for kind, prefix in (("protobuf", "storage_write"), ("Arrow", "storage_write_arrow")):
            rows.append(
                (
                    f"sink staging: Storage Write {kind} vs insertAll (rows/s)",
                    f"{sink[prefix + '_rows_per_second']:,} vs {sink['sink_rows_per_second']:,}",
                    f"{sink[prefix + '_ratio']}x",
                    f">= {sink['storage_write_ratio_target']:g}x",
                )
            )
    e2e = results.get("predictions_e2e")
    if e2e:
        run = _e2e_main_run(e2e)
        if run:
            rows.append(
                (
                    "predictions end to end (start → merged)",
                    f"{run['predictions']:,} in {run['seconds_start_to_merged']} s",
                    f"{run['predictions_per_second']:,} predictions/s",
                    "< 20 s",
                )
            )
    return rows


def render(rows: Sequence[tuple[str, str, str, str]], broker: str) -> str:
    header = ("measure", "phaseflow vs baseline", "ratio / rate", "target")
    title = f"phaseflow benchmarks on {broker} + the BigQuery emulator, one run, side by side"
    return "\n".join([title, *aligned_rows([header, *rows])])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--broker", choices=["tansu", "kafka"], default="tansu")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    args = parser.parse_args(argv)
    chosen = args.only or list(BENCHMARKS)
    results: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        url, kind = stack.enter_context(started_broker(args.broker))
        endpoint, write_endpoint = stack.enter_context(bench_bigquery_endpoints(PROJECT))
        env = {
            **os.environ,
            "PHASEFLOW_BROKER_URL": url,
            BROKER_KIND_ENV: kind,
            "PHASEFLOW_BIGQUERY_ENDPOINT": endpoint,
            "PHASEFLOW_BIGQUERY_PROJECT": PROJECT,
        }
        if write_endpoint:  # bench.sink stages through the Storage Write API too
            env["PHASEFLOW_BIGQUERY_WRITE_ENDPOINT"] = write_endpoint
        for name in chosen:
            results[name] = run_one(name, env)
    print()
    print(render(summary_rows(results), kind))
    print(json.dumps({"broker": kind, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
