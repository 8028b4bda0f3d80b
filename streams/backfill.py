"""``phaseflow rerun`` over every gated phase: phase by phase, each waiting for its trigger.

Sending the reruns of phases 2-6 at the same moment ran phase N + 1 on the output phase N had
*before* its rerun. A rerun now asks only the first gated phase's processors to run again; the
readiness agent fires each later phase from its predecessor's fresh completions (a rerun of a
fired phase re-fires the next one and re-arms it, see phaseflow.agents.rearm), and this command
follows the triggers topic, printing each phase as it starts for every date, until the last phase
has started everywhere. A phase that does not start within ``--phase-timeout`` for some date ends
the command with exit code 1, naming the dates (and ``phaseflow status`` to see why).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TextIO

from phaseflow.models.codec import decode
from phaseflow.models.events import PhaseTrigger
from phaseflow.streams.core.lifecycle import AsyncService
from phaseflow.streams.core.registry import Registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import CommittedReader, TopicName

#: Reads the triggers that arrived within ``wait_seconds`` (possibly none).
ReadTriggers = Callable[[float], Awaitable[list[PhaseTrigger]]]


def followed_phases(registry: Registry, first: int) -> list[int]:
    """The phases a rerun of ``first`` starts, in order: every declared phase after it."""
    return sorted(spec.phase for spec in registry.phases if spec.phase > first)


@dataclass
class BackfillProgress:
    """Which (date, phase) triggers have arrived since the reruns were sent."""

    dates: Sequence[date]
    started: dict[int, set[date]] = field(default_factory=dict)

    def observe(self, trigger: PhaseTrigger) -> None:
        if trigger.game_date in self.dates:
            self.started.setdefault(trigger.phase, set()).add(trigger.game_date)

    def pending(self, phase: int) -> list[date]:
        """Dates whose ``phase`` has not started yet."""
        return [day for day in self.dates if day not in self.started.get(phase, set())]


async def follow_phases(
    registry: Registry,
    *,
    first: int,
    dates: Sequence[date],
    read: ReadTriggers,
    phase_timeout: timedelta,
    out: TextIO,
    err: TextIO | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> int:
    """Wait for each phase after ``first`` to start on every date, in order; 0 or 1."""
    progress = BackfillProgress(dates)
    for phase in followed_phases(registry, first):
        give_up_at = monotonic() + phase_timeout.total_seconds()
        while progress.pending(phase) and monotonic() < give_up_at:
            for trigger in await read(0.5):
                progress.observe(trigger)
        pending = progress.pending(phase)
        if pending:
            shown = ", ".join(day.isoformat() for day in pending[:10])
            more = f" and {len(pending) - 10} more" if len(pending) > 10 else ""
            (err or sys.stderr).write(
                f"phaseflow: error: phase {phase} did not start within "
                f"{_minutes(phase_timeout)} for {shown}{more}; later phases were not followed "
                f"(phaseflow status --date {pending[0].isoformat()} shows what it waits for)\n"
            )
            return 1
        out.write(f"phase {phase} started for {len(dates)} date(s)\n")
    out.write(f"every phase after phase {first} started again for {len(dates)} date(s)\n")
    return 0


def _minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:g} min"


class TriggerFollower(AsyncService):
    """The triggers published from now on (no consumer group, nothing committed): positioned
    at the end of every partition when started, i.e. before the command sends anything."""

    def __init__(self, settings: Settings) -> None:
        self._reader = CommittedReader(settings, TopicName.PHASE_TRIGGERS, offset_reset="latest")

    async def start(self) -> None:
        consumer = await self._reader.start()
        try:
            for partition in consumer.assignment():
                await consumer.position(partition)  # resolves "latest" now
        except BaseException:
            await self._reader.stop()  # `async with` does not stop what failed to start
            raise

    async def stop(self) -> None:
        await self._reader.stop()

    async def read(self, wait_seconds: float) -> list[PhaseTrigger]:
        batches = await self._reader.consumer.getmany(timeout_ms=int(wait_seconds * 1000))
        return [
            decode(PhaseTrigger, record.value)
            for records in batches.values()
            for record in records
            if record.value is not None
        ]
