"""``phaseflow rerun``: RerunRequests for one processor, a phase, or every gated phase.

Over one date the reason is ``manual``; over a date range (``--to``) it is ``backfill``. Every
gated phase (no ``--phase``/``--processor``) means phase by phase: only the first gated phase's
processors get requests, each later phase starts from its predecessor's fresh trigger, and the
command follows the triggers until the last phase started (phaseflow.streams.backfill). Which
processors a phase expects on a date comes from the registry (mode-aware, as the readiness
agent judges it: pre-game dates expect only the same-day processors).

Request ids are deterministic: ``RerunRequest.make_id(date, phase, "{processor}|{reason}",
attempt)``. Running the same command again (say after it died half way) re-sends the same ids,
which consumers that deduplicate by ``request_id`` take once; ``--attempt 2`` asks again on
purpose. The reason is part of the id so an operator's request never shares an id with the
readiness agent's automatic reruns (``make_id(date, phase, processor, attempt)``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any, Final, TextIO
from zoneinfo import ZoneInfo

from phaseflow.models.codec import encode
from phaseflow.models.events import RerunRequest
from phaseflow.streams.backfill import TriggerFollower, follow_phases, followed_phases
from phaseflow.streams.core.registry import Registry, load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.side_producer import SideProducer
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.json_output import write_json
from phaseflow.streams.progress import ProgressBar

#: A longer range is almost certainly a typo (one season is ~250 days).
MAX_DAYS: Final = 400
#: How long a backfill waits for each later phase to start on every date.
DEFAULT_PHASE_TIMEOUT: Final = timedelta(minutes=60)


class RerunPlanError(ValueError):
    """The command's arguments do not describe a set of reruns."""


def date_range(start: date, end: date | None) -> list[date]:
    last = start if end is None else end
    if last < start:
        raise RerunPlanError(f"--to {last} is before --date {start}")
    days = (last - start).days + 1
    if days > MAX_DAYS:
        raise RerunPlanError(f"{days} days is more than {MAX_DAYS}; split the backfill")
    return [start + timedelta(days=n) for n in range(days)]


def plan_reruns(
    registry: Registry,
    *,
    start: date,
    end: date | None,
    phase: int | None,
    processor: str | None,
    today: date,
    now: datetime,
    requested_by: str,
    attempt: int = 1,
) -> list[RerunRequest]:
    """The requests ``phaseflow rerun`` publishes, in date, phase, processor order."""
    dates = date_range(start, end)
    reason = "backfill" if end is not None and end != start else "manual"
    if processor is not None:
        owner = registry.phase_for_processor(processor)
        if owner is None:
            raise RerunPlanError(f"processor {processor!r} is not in the registry")
        if phase is not None and phase != owner:
            raise RerunPlanError(f"processor {processor!r} is in phase {owner}, not {phase}")
        phases = [owner]
    elif phase is not None:
        if not registry.has_phase(phase):
            raise RerunPlanError(f"phase {phase} is not in the registry")
        phases = [phase]
    else:
        # Phase by phase: later phases start from their triggers (phaseflow.streams.backfill).
        phases = [first_gated_phase(registry)]
    requests: list[RerunRequest] = []
    for game_date in dates:
        for number in phases:
            spec = registry.phase(number)
            names = (
                [processor]
                if processor is not None
                else sorted(spec.expected_processors(game_date, today))
            )
            requests.extend(
                RerunRequest(
                    game_date=game_date,
                    phase=number,
                    processor_name=name,
                    reason=reason,
                    attempt=attempt,
                    request_id=RerunRequest.make_id(game_date, number, f"{name}|{reason}", attempt),
                    requested_by=requested_by,
                    requested_at=now,
                )
                for name in names
            )
    return requests


def first_gated_phase(registry: Registry) -> int:
    return min(spec.phase for spec in registry.phases if spec.gated)


def describe(requests: Sequence[RerunRequest], limit: int = 20) -> str:
    lines = [
        f"{r.game_date} phase {r.phase} {r.processor_name} ({r.reason}, attempt {r.attempt})"
        for r in requests[:limit]
    ]
    if len(requests) > limit:
        lines.append(f"... and {len(requests) - limit} more")
    return "\n".join(lines)


def plan_document(
    requests: Sequence[RerunRequest], *, first: int | None, later: Sequence[int]
) -> dict[str, Any]:
    """``phaseflow rerun --dry-run --json``: every request that would be sent, and (for a rerun
    of every gated phase) the phase sent first and those that then start from their triggers."""
    return {
        "dry_run": True,
        "count": len(requests),
        "first_phase": first,
        "followed_phases": list(later),
        "requests": [request.model_dump(mode="json") for request in requests],
    }


async def rerun_command(
    settings: Settings,
    *,
    start: date,
    end: date | None,
    phase: int | None,
    processor: str | None,
    attempt: int,
    dry_run: bool,
    out: TextIO,
    registry: Registry | None = None,
    requested_by: str = "cli",
    phase_timeout: timedelta | None = DEFAULT_PHASE_TIMEOUT,
    as_json: bool = False,
    err: TextIO | None = None,
) -> int:
    """Publish the planned requests; over every gated phase, then follow the later phases'
    triggers (``phase_timeout`` per phase; None: do not follow). ``as_json`` (with ``dry_run``
    only): the plan as one JSON document. Errors go to ``err`` (stderr), one line each."""
    if as_json and not dry_run:
        raise ValueError("as_json needs dry_run: a sent rerun reports its progress as text")
    errors = err or sys.stderr
    registry = registry or load_registry(settings.registry_path)
    now = datetime.now(ZoneInfo(settings.pipeline_timezone))
    try:
        requests = plan_reruns(
            registry,
            start=start,
            end=end,
            phase=phase,
            processor=processor,
            today=now.date(),
            now=now,
            requested_by=requested_by,
            attempt=attempt,
        )
    except RerunPlanError as error:
        errors.write(f"phaseflow: error: {error}\n")
        return 2
    if phase_timeout is not None and phase_timeout <= timedelta(0):
        errors.write(
            "phaseflow: error: --phase-timeout must be more than 0 minutes (or use --no-follow)\n"
        )
        return 2
    every_phase = phase is None and processor is None
    first = first_gated_phase(registry)
    if as_json:
        later = followed_phases(registry, first) if every_phase else []
        write_json(out, plan_document(requests, first=first if every_phase else None, later=later))
        return 0
    out.write(f"{len(requests)} rerun request(s)\n")
    if every_phase:
        later = followed_phases(registry, first)
        out.write(
            f"phase {first} first; phases {', '.join(map(str, later))} start from their "
            "triggers, one after the other\n"
        )
    if dry_run:
        out.write(describe(requests) + "\ndry run: nothing sent\n")
        return 0
    if not every_phase or phase_timeout is None:
        await _publish(settings, requests, out)
        return 0
    async with TriggerFollower(settings) as reader:  # positioned before anything is sent
        await _publish(settings, requests, out)
        return await follow_phases(
            registry,
            first=first,
            dates=date_range(start, end),
            read=reader.read,
            phase_timeout=phase_timeout,
            out=out,
            err=errors,
        )


async def _publish(settings: Settings, requests: Sequence[RerunRequest], out: TextIO) -> None:
    bar = ProgressBar(len(requests), out, label="publishing")
    async with SideProducer(settings) as producer:
        for request in requests:
            await producer.send(TopicName.RERUN_REQUESTS, request.key, encode(request))
            bar.advance()
    bar.finish()
    out.write(f"published {len(requests)} rerun request(s)\n")


def run_rerun(
    settings: Settings,
    *,
    start: date,
    end: date | None = None,
    phase: int | None = None,
    processor: str | None = None,
    attempt: int = 1,
    dry_run: bool = False,
    out: TextIO | None = None,
    phase_timeout: timedelta | None = DEFAULT_PHASE_TIMEOUT,
    as_json: bool = False,
) -> int:
    """``phaseflow rerun``."""
    return asyncio.run(
        rerun_command(
            settings,
            start=start,
            end=end,
            phase=phase,
            processor=processor,
            attempt=attempt,
            dry_run=dry_run,
            out=out or sys.stdout,
            phase_timeout=phase_timeout,
            as_json=as_json,
        )
    )
