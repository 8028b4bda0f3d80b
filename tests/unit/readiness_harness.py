"""A ReadinessProcessor with a dict table, a recording publisher and a manual clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from phaseflow.agents.envelope import Origin
from phaseflow.agents.readiness import ReadinessProcessor
from phaseflow.models.codec import decode, encode
from phaseflow.models.events import Alert, DeadLetter, PhaseTrigger, RerunRequest
from phaseflow.streams.clock import ManualClock
from phaseflow.streams.registry import Registry, load_registry
from phaseflow.streams.simulation import make_completion
from phaseflow.streams.topics import TopicName

GAME_DATE = date(2026, 3, 10)
NOW = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)  # the morning after: overnight mode
ORIGIN = Origin(topic="t.phase-completions", partition=0, offset=7, key=b"2026-03-10")
#: The default registry's overnight processors of phases 3 and 4, in the order tests report them.
PHASE3 = [
    "player_game_summary",
    "team_defense_game_summary",
    "team_offense_game_summary",
    "upcoming_player_game_context",
    "upcoming_team_game_context",
]
PHASE4 = [
    "team_defense_zone_analysis",
    "player_shot_zone_analysis",
    "player_composite_factors",
    "player_daily_cache",
    "ml_feature_store",
]


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[TopicName, str, bytes]] = []

    async def send(self, topic: TopicName, key: str, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def _of(self, topic: TopicName) -> list[bytes]:
        return [value for sent_to, _, value in self.sent if sent_to == topic]

    def triggers(self) -> list[PhaseTrigger]:
        return [decode(PhaseTrigger, v) for v in self._of(TopicName.PHASE_TRIGGERS)]

    def dead_letters(self) -> list[DeadLetter]:
        return [decode(DeadLetter, v) for v in self._of(TopicName.DEAD_LETTERS)]

    def reruns(self) -> list[RerunRequest]:
        return [decode(RerunRequest, v) for v in self._of(TopicName.RERUN_REQUESTS)]

    def alerts(self) -> list[Alert]:
        return [decode(Alert, v) for v in self._of(TopicName.ALERTS)]


class Harness:
    """Drives one processor as the Faust agent and timer would, on a virtual clock."""

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        now: datetime = NOW,
        table: dict[str, Any] | None = None,
        durations: dict[str, Any] | None = None,
    ) -> None:
        self.registry = registry or load_registry(None)
        self.clock = ManualClock(now)
        self.publisher = RecordingPublisher()
        self.table: dict[str, Any] = {} if table is None else table
        self.durations: dict[str, Any] = {} if durations is None else durations
        self.processor = ReadinessProcessor(
            registry=self.registry,
            table=self.table,
            publisher=self.publisher,
            clock=self.clock,
            pipeline_timezone="America/New_York",
            max_message_bytes=10_000,
            durations=self.durations,
        )

    async def complete(
        self,
        processor: str,
        phase: int,
        *,
        status: str = "success",
        game_date: date = GAME_DATE,
        metadata: dict[str, Any] | None = None,
    ) -> list[PhaseTrigger]:
        event = make_completion(
            processor, game_date, phase, status=status, at=self.clock.now(), metadata=metadata
        )
        return await self.processor.handle(encode(event), ORIGIN)

    async def fire_upstream_of(self, phase: int, *, game_date: date = GAME_DATE) -> None:
        """Complete every gated phase before ``phase`` (phase order: ``phase`` may then fire),
        then forget what that sent, so a test sees only what its own phase does."""
        for spec in self.registry.phases:
            if spec.gated and spec.phase < phase:
                today = self.processor.today()
                for name in sorted(spec.expected_processors(game_date, today)):
                    await self.complete(name, spec.phase, game_date=game_date)
        self.publisher.sent.clear()

    async def tick(self) -> list[PhaseTrigger]:
        """What the timer and the agent do together: send due ticks, then handle them."""
        fired: list[PhaseTrigger] = []
        for tick in self.processor.due_ticks():
            fired += await self.processor.handle_tick(encode(tick), ORIGIN)
        return fired

    async def advance(self, delta: timedelta) -> list[PhaseTrigger]:
        self.clock.advance(delta)
        return await self.tick()
