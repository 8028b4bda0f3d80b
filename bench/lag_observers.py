"""What ``bench.lag_groups`` watches besides its in-process monitor: a real worker's
Burrow-compatible endpoint, a ``phaseflow lag --watch`` process, and single ``phaseflow lag``
runs (their output verbatim, trimmed to the run's groups).

Every observation is timed by the bench's own clock (seconds since the run started) when the
bench read it: a poll of the endpoint, a ``group ...`` line of ``--watch``. So a delay includes
the observer's own sampling and polling, as a user of that tool would see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Final

import aiohttp

from phaseflow.streams.local.worker_process import phaseflow_argv

#: A group's verdict line of the ``phaseflow lag`` table: ``group NAME: STATUS, lag ...``.
_GROUP_LINE: Final = re.compile(r"^group (?P<group>\S+): (?P<status>[A-Z_]+),")
#: Seconds between two polls of the Burrow endpoint (all groups each time).
BURROW_POLL_EVERY: Final = 0.25


@dataclass
class Timeline:
    """Each group's statuses as observed: (seconds since the start, status)."""

    samples: dict[str, list[tuple[float, str]]] = field(default_factory=dict)

    def add(self, group: str, at: float, status: str) -> None:
        self.samples.setdefault(group, []).append((at, status))

    def first(self, group: str, status: str, after: float = 0.0) -> float | None:
        return next(
            (at for at, seen in self.samples.get(group, []) if seen == status and at >= after),
            None,
        )

    def seen(self, group: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, status in self.samples.get(group, []):
            counts[status] = counts.get(status, 0) + 1
        return counts


@dataclass
class BurrowObservations:
    """What ``GET /v3/kafka/{cluster}/consumer/{group}/lag`` answered for each group."""

    partitions: Timeline = field(default_factory=Timeline)
    groups: Timeline = field(default_factory=Timeline)
    last_body: dict[str, Any] = field(default_factory=dict)
    #: Per group, the worker's samples of its first partition: observedAt (ms) → (seconds
    #: since the start when first read, committed offset, lag).
    samples: dict[str, dict[int, tuple[float, int, int]]] = field(default_factory=dict)

    def record(self, name: str, at: float, body: dict[str, Any]) -> None:
        status = body["status"]
        self.groups.add(name, at, status["status"])
        for partition in status["partitions"]:
            self.partitions.add(name, at, partition["status"])
        end = status["partitions"][0]["end"] if status["partitions"] else None
        if end is not None:
            samples = self.samples.setdefault(name, {})
            samples.setdefault(end["observedAt"], (at, end["offset"], end["lag"]))
        self.last_body[name] = body

    def sample_count(self, name: str, after: float) -> int:
        """How many of the worker's samples of ``name`` were read after ``after``."""
        return sum(1 for at, _, _ in self.samples.get(name, {}).values() if at >= after)

    def steps_without_growth(self, name: str, after: float) -> list[str]:
        """The worker's consecutive samples of ``name`` (read after ``after``) whose lag did
        not grow: each one breaks the trend WARN for a window."""
        series = sorted(self.samples.get(name, {}).items())
        found = []
        for (_, (_, offset_a, lag_a)), (_, (at, offset_b, lag_b)) in pairwise(series):
            if at >= after and lag_b <= lag_a:
                found.append(
                    f"{at:.1f} s: lag {lag_a} -> {lag_b} (offset {offset_a} -> {offset_b})"
                )
        return found


async def poll_burrow(
    base_url: str,
    cluster: str,
    groups: Mapping[str, str],
    clock: Callable[[], float],
    *,
    stop: asyncio.Event,
    seen: BurrowObservations,
) -> None:
    """Poll each group's Burrow ``/lag`` (``groups``: short name → consumer group) until
    ``stop``; a 404 (NOTFOUND: not sampled yet) is recorded like any other answer."""

    async def ask(session: aiohttp.ClientSession, name: str, group: str) -> None:
        async with session.get(f"/v3/kafka/{cluster}/consumer/{group}/lag") as response:
            body = await response.json()
        seen.record(name, clock(), body)

    async with aiohttp.ClientSession(base_url) as session:
        while not stop.is_set():
            # All groups at once, so each poll sees (nearly) every one of the worker's samples.
            await asyncio.gather(*(ask(session, name, group) for name, group in groups.items()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), BURROW_POLL_EVERY)


def burrow_summary(name: str, body: dict[str, Any]) -> str:
    """One line of a Burrow answer: group status, each partition's status and lag, totals."""
    status = body["status"]
    partitions = ", ".join(
        f"{p['topic']}[{p['partition']}] {p['status']} lag {p['current_lag']}"
        for p in status["partitions"]
    )
    return (
        f"{name}: {status['status']} ({partitions or 'no partitions'}); "
        f"totallag {status['totallag']}"
    )


async def watch_lag(
    env: Mapping[str, str],
    interval: float,
    groups: Mapping[str, str],
    clock: Callable[[], float],
    seen: Timeline,
) -> None:
    """Run ``phaseflow lag --watch`` until cancelled and record each group's verdict lines.
    Ending by itself is a failure (with its last lines)."""
    process = await asyncio.create_subprocess_exec(
        *phaseflow_argv("lag", "--watch", "--interval", f"{interval:g}"),
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None  # noqa: S101 - PIPE was asked for
    names = {group: name for name, group in groups.items()}
    last_lines: deque[str] = deque(maxlen=20)
    try:
        while line := (await process.stdout.readline()).decode(errors="replace"):
            last_lines.append(line.rstrip())
            verdict = _GROUP_LINE.match(line)
            if verdict and verdict["group"] in names:
                seen.add(names[verdict["group"]], clock(), verdict["status"])
        await process.wait()
        tail = "\n".join(last_lines)
        raise RuntimeError(f"phaseflow lag --watch ended with {process.returncode}:\n{tail}")
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def lag_once(env: Mapping[str, str], groups: Collection[str], *, as_json: bool) -> str:
    """One ``phaseflow lag`` (``--json`` with ``as_json``), its output trimmed to ``groups``."""
    arguments = ("lag", "--json") if as_json else ("lag",)
    process = await asyncio.create_subprocess_exec(
        *phaseflow_argv(*arguments),
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(
            f"phaseflow {' '.join(arguments)} exited with {process.returncode}: "
            f"{err.decode(errors='replace').strip()}"
        )
    text = out.decode(errors="replace")
    return trim_json(text, groups) if as_json else trim_table(text, groups)


def trim_table(text: str, groups: Collection[str]) -> str:
    """The ``phaseflow lag`` table without the rows and verdicts of other groups (the
    deployment's own groups are always watched)."""
    listed = [m["group"] for m in map(_GROUP_LINE.match, text.splitlines()) if m]
    listed += [line.split()[1].rstrip(":") for line in text.splitlines() if "no committed" in line]
    others = set(listed) - set(groups)
    kept = []
    for line in text.splitlines():
        words = line.split()
        owner = words[1].rstrip(":") if words[:1] == ["group"] and len(words) > 1 else None
        if (owner or (words[0] if words else "")) in others:
            continue
        kept.append(line)
    return "\n".join(kept)


def trim_json(text: str, groups: Collection[str]) -> str:
    """``phaseflow lag --json`` with only ``groups``' rows and verdicts, indented as printed."""
    document = json.loads(text)
    document["rows"] = [row for row in document["rows"] if row["group"] in groups]
    document["groups"] = [entry for entry in document["groups"] if entry["group"] in groups]
    return json.dumps(document, indent=2)
