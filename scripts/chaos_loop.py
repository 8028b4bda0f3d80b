"""Run one chaos test N times in a row and print each run's figures and a summary.

A race that fails one run in five cannot be judged from one run: this runs the chosen test
again and again on Apache Kafka, keeps each run's chaos report and worker logs under its own
directory, and counts the worker-log lines that show the repairs and holds at work (table
recovery holding a changelog's end, the fetch-gap safety net re-fetching)::

    python scripts/chaos_loop.py 10                                  # the kill -9 test, 10 runs
    python scripts/chaos_loop.py 5 -k "broker_restart and graceful" \
        --fault "broker restart (graceful stop, start on same port and data)"
    python scripts/chaos_loop.py 8 --busy                            # one core kept busy meanwhile

Exit 1 if any run failed. Runs one after the other (never beside each other or other work:
the figures are timings on a 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parent.parent
REPORT: Final = REPO / ".cache" / "chaos-report.json"
KILL_9: Final = "kill -9 worker mid prediction batch"
#: Worker-log lines worth counting per run: the phrase, and the column name it is shown under.
MARKERS: Final = {
    "holding its end until they are": "recovery holds",
    "in the recovery queue": "queued holds",
    "fetching them again": "re-fetches",
    "stuck partition:": "stuck",
}


def run_once(selector: str, workdir: Path, *, busy: bool) -> tuple[int, dict[str, object]]:
    """One pytest run of the selected chaos test; its exit status and its chaos report."""
    started = time.time()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        done = subprocess.run(  # noqa: S603 - this interpreter, our own tests
            [
                sys.executable,
                "-m",
                "pytest",
                "-m",
                "chaos",
                "tests/chaos",
                "-k",
                selector,
                "-p",
                "no:cacheprovider",
                f"--basetemp={workdir / 'tmp'}",
                "-q",
            ],
            cwd=REPO,
            env={**os.environ, "PHASEFLOW_TEST_BROKER": "kafka"},
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    (workdir / "pytest.log").write_text(done.stdout + done.stderr)
    report: dict[str, object] = {}
    # Only a report this run wrote: one that failed before writing it shows no figures.
    if REPORT.exists() and REPORT.stat().st_mtime >= started:
        shutil.copy(REPORT, workdir / "chaos-report.json")
        report = json.loads(REPORT.read_text())
    return done.returncode, report


def marker_counts(workdir: Path) -> dict[str, int]:
    """How many worker logs of the run contain each marker."""
    logs = [path.read_text(errors="replace") for path in workdir.rglob("worker*.log")]
    return {column: sum(phrase in text for text in logs) for phrase, column in MARKERS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=int)
    parser.add_argument("-k", dest="selector", default="kill_9", help="pytest -k expression")
    parser.add_argument("--fault", default=KILL_9, help="the chaos report's fault to show")
    parser.add_argument("--busy", action="store_true", help="keep one core busy meanwhile")
    parser.add_argument("--keep", type=Path, default=None, help="where to keep every run")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="chaos-loop-"))
    failed = 0
    seen: dict[str, list[float]] = {}
    for run in range(1, args.runs + 1):
        workdir = root / f"run-{run}"
        workdir.mkdir(parents=True, exist_ok=True)
        status, report = run_once(args.selector, workdir, busy=args.busy)
        failed += status != 0
        faults = report.get("faults")
        figures = faults.get(args.fault, {}) if isinstance(faults, dict) else {}
        for name, value in figures.items():
            if isinstance(value, int | float):
                seen.setdefault(name, []).append(float(value))
        counts = " ".join(f"{k}={v}" for k, v in marker_counts(workdir).items())
        shown = " ".join(f"{v}" for v in figures.values())
        print(f"run {run}: {'passed' if status == 0 else 'FAILED'}  {shown}  {counts}", flush=True)
    print(f"\n{args.runs - failed} of {args.runs} passed; runs kept under {root}")
    for name, values in seen.items():
        print(
            f"  {name:<48} min {min(values):g}  median {statistics.median(values):g}  "
            f"max {max(values):g}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
