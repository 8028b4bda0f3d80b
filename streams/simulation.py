"""A simulated game day: processors that report completions and answer phase triggers.

Used by ``phaseflow demo``, the end-to-end tests and the benchmarks, so all three exercise the
same path a real pipeline does: completions in, triggers out, the next phase's processors run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from phaseflow.models.codec import decode
from phaseflow.models.events import PhaseCompletion, PhaseTrigger
from phaseflow.streams.core.lifecycle import AsyncService
from phaseflow.streams.core.registry import Registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import CommittedReader, TopicName
from phaseflow.streams.publish import CompletionPublisher

EventT = TypeVar("EventT", bound=BaseModel)


def make_completion(
    processor: str,
    game_date: date,
    phase: int,
    *,
    status: str = "success",
    record_count: int = 100,
    at: datetime | None = None,
    execution_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> PhaseCompletion:
    """A completion as a processor of the production pipeline would publish it."""
    return PhaseCompletion.model_validate(
        {
            "processor_name": processor,
            "game_date": game_date.isoformat(),
            "phase": phase,
            "status": status,
            "record_count": record_count,
            "execution_id": execution_id or f"exec-{uuid.uuid4()}",
            "correlation_id": f"sim-{game_date.isoformat()}",
            "timestamp": (at or datetime.now(UTC)).isoformat(),
            "metadata": metadata or {},
        }
    )


def phase_completions(
    registry: Registry,
    game_date: date,
    phase: int,
    *,
    today: date,
    silent: frozenset[str] = frozenset(),
) -> list[PhaseCompletion]:
    """One successful completion from every processor the registry expects of ``phase``, but
    the ``silent`` ones (processors that never report)."""
    spec = registry.phase(phase)
    processors = sorted(spec.expected_processors(game_date, today) - silent)
    if phase == 5:
        metadata = {"expected_players": 450, "completed_players": 448, "total_predictions": 11200}
        return [make_completion(name, game_date, phase, metadata=metadata) for name in processors]
    return [make_completion(name, game_date, phase) for name in processors]


class TopicReader(AsyncService, Generic[EventT]):
    """Reads a catalog topic from the beginning without a consumer group (no join wait)."""

    def __init__(self, settings: Settings, topic: TopicName, model: type[EventT]) -> None:
        self._model = model
        # Without a group_id aiokafka assigns itself every partition of the subscribed topic.
        self._reader = CommittedReader(settings, topic)

    async def start(self) -> None:
        await self._reader.start()

    async def stop(self) -> None:
        await self._reader.stop()

    async def read(self, wait_seconds: float) -> list[EventT]:
        """Records that arrive within ``wait_seconds`` (possibly none)."""
        return [event for _, event in await self.read_stamped(wait_seconds)]

    async def read_stamped(self, wait_seconds: float) -> list[tuple[datetime, EventT]]:
        """Like :meth:`read`, each with its record's timestamp (when it went on the topic)."""
        batches = await self._reader.consumer.getmany(timeout_ms=int(wait_seconds * 1000))
        return [
            (
                datetime.fromtimestamp(record.timestamp / 1000, UTC),
                decode(self._model, record.value),
            )
            for records in batches.values()
            for record in records
            if record.value is not None
        ]

    async def read_until(
        self, done: Callable[[list[EventT]], bool], *, give_up_after: float, quiet_for: float = 0.0
    ) -> list[EventT]:
        """Read until ``done(everything so far)``, then ``quiet_for`` more seconds (to catch
        anything that should not be there), or until ``give_up_after`` seconds."""
        found: list[EventT] = []
        deadline = time.monotonic() + give_up_after
        while not done(found) and time.monotonic() < deadline:
            found += await self.read(0.25)
        quiet_until = time.monotonic() + quiet_for
        while time.monotonic() < quiet_until:
            found += await self.read(0.25)
        return found


class TriggerReader(TopicReader[PhaseTrigger]):
    """Reads the phase-trigger topic."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, TopicName.PHASE_TRIGGERS, PhaseTrigger)


@dataclass
class DayResult:
    """What happened on a simulated day."""

    game_date: date
    triggers: list[PhaseTrigger] = field(default_factory=list)
    trigger_seconds: dict[int, float] = field(default_factory=dict)
    completions_sent: int = 0
    finished: bool = False
    seconds: float = 0.0


async def _publish_all(publisher: CompletionPublisher, events: Iterable[PhaseCompletion]) -> int:
    sent = 0
    for event in events:
        await publisher.publish(event)
        sent += 1
    return sent


async def simulate_day(
    settings: Settings,
    registry: Registry,
    game_date: date,
    *,
    today: date,
    give_up_after: float = 120.0,
    real_phases: frozenset[int] = frozenset(),
    silent: frozenset[str] = frozenset(),
) -> DayResult:
    """Run a game day end to end: phases 1-2 report, then each trigger starts the next phase.

    Phases in ``real_phases`` are left to the real service (e.g. 5: the prediction coordinator
    and workers, with seeded source data); their triggers are waited for, not answered.
    Processors in ``silent`` never report (their phase waits for its deadlines).
    """
    result = DayResult(game_date=game_date)
    started = time.monotonic()
    reader = TriggerReader(settings)
    await reader.start()
    try:
        async with CompletionPublisher(settings) as publisher:
            for phase in (1, 2):
                result.completions_sent += await _publish_all(
                    publisher,
                    phase_completions(registry, game_date, phase, today=today, silent=silent),
                )
            while time.monotonic() - started < give_up_after and not result.finished:
                for trigger in await reader.read(0.5):
                    if trigger.game_date != game_date or trigger.phase in result.trigger_seconds:
                        continue
                    result.triggers.append(trigger)
                    result.trigger_seconds[trigger.phase] = time.monotonic() - started
                    if trigger.phase in real_phases:
                        continue
                    # The started phase's processors run and report.
                    result.completions_sent += await _publish_all(
                        publisher,
                        phase_completions(
                            registry, game_date, trigger.phase, today=today, silent=silent
                        ),
                    )
                    if trigger.phase == 6:
                        result.finished = True
                await asyncio.sleep(0)
    finally:
        await reader.stop()
    result.seconds = time.monotonic() - started
    return result
