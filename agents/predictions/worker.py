"""Prediction workers: a batch of PredictionRequests in, Prediction records and "done" reports out.

``PredictionWorker.handle_batch`` is the whole job and needs no broker: decode the batch (bad
requests are dead-lettered), load every player's history with one query (cached), run each
enabled system behind its circuit breaker for every line, publish each Prediction to
``{prefix}.predictions`` under ``Prediction.key`` with a deterministic ``prediction_id`` (a
re-sent request yields the same keys and ids, so compaction and the sink's MERGE keep one), then
one ``done`` record per player to ``{prefix}.prediction-progress`` for the coordinator.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Protocol

from phaseflow.agents.predictions.bq import QueryError
from phaseflow.agents.predictions.breaker import CircuitBreaker
from phaseflow.agents.predictions.features import GameContext, PlayerFeatures, PlayerHistory
from phaseflow.agents.predictions.messages import PlayerDone
from phaseflow.agents.predictions.publishing import send_all
from phaseflow.agents.predictions.systems import PredictionSystem
from phaseflow.models.codec import EventDecodeError, decode, encode
from phaseflow.models.events import Alert, Prediction, PredictionRequest
from phaseflow.streams.core.clock import Clock
from phaseflow.streams.core.envelope import Origin, dead_letter
from phaseflow.streams.core.publisher import Publisher
from phaseflow.streams.core.registry import SystemSpec
from phaseflow.streams.core.topics import TopicName

log = logging.getLogger(__name__)


class FeatureSource(Protocol):
    """What the worker loads features from (``HistoryLoader``; a fake in unit tests)."""

    async def load(self, players: Iterable[str], before: date) -> dict[str, PlayerHistory]: ...

    async def context(self, game_date: date) -> dict[str, GameContext]: ...


@dataclass
class SystemStats:
    """Per system: requests answered (successes), failed, or skipped with the circuit open;
    ``predictions`` counts the answers (one per line)."""

    predictions: int = 0
    successes: int = 0
    failures: int = 0
    skipped: int = 0


@dataclass
class WorkerStats:
    batches: int = 0
    requests: int = 0
    duplicates_in_batch: int = 0
    predictions: int = 0
    dead_letters: int = 0
    systems: dict[str, SystemStats] = field(default_factory=dict)
    #: Where the last batch's time went: loading history, running the systems, publishing.
    last_batch_seconds: dict[str, float] = field(default_factory=dict)


class PredictionWorker:
    """Runs every enabled system for a batch of requests."""

    def __init__(
        self,
        *,
        systems: Sequence[tuple[PredictionSystem, SystemSpec]],
        features: FeatureSource,
        publisher: Publisher,
        clock: Clock,
        max_message_bytes: int = 1_048_576,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.systems = [system for system, _ in systems]
        self._monotonic = monotonic
        self.breakers = {
            system.system_id: CircuitBreaker.from_spec(spec, clock) for system, spec in systems
        }
        self._features = features
        self._publisher = publisher
        self._clock = clock
        self._max_message_bytes = max_message_bytes
        self.stats = WorkerStats(systems={s.system_id: SystemStats() for s in self.systems})

    async def handle_batch(self, items: Sequence[tuple[bytes, Origin]]) -> list[Prediction]:
        """Process one batch of raw requests; return the predictions published."""
        self.stats.batches += 1
        spent = {"history": 0.0, "predict": 0.0, "publish": 0.0}
        requests: list[tuple[PredictionRequest, bytes, Origin]] = []
        seen: set[str] = set()
        for raw, origin in items:
            try:
                request = decode(PredictionRequest, raw, max_bytes=self._max_message_bytes)
            except EventDecodeError as error:
                await self._dead_letter(raw, origin, error.reason, error.error_type)
                continue
            if request.request_id in seen:
                self.stats.duplicates_in_batch += 1
                continue
            seen.add(request.request_id)
            requests.append((request, raw, origin))
        self.stats.requests += len(requests)
        published: list[Prediction] = []
        done: list[PlayerDone] = []
        by_date: dict[date, list[tuple[PredictionRequest, bytes, Origin]]] = {}
        for entry in requests:
            by_date.setdefault(entry[0].game_date, []).append(entry)
        for game_date, group in by_date.items():
            players = [request.player_lookup for request, _, _ in group]
            began = self._monotonic()
            try:
                context = await self._features.context(game_date)
                histories = await self._features.load(players, game_date)
            except QueryError as error:
                # Not bad input: the history store is unreachable. Dead-lettered with the
                # reason so nothing is lost (replayable), and the stream keeps going.
                for _, raw, origin in group:
                    await self._dead_letter(raw, origin, str(error), "history_unavailable")
                continue
            finally:
                spent["history"] += self._monotonic() - began
            began = self._monotonic()
            for request, _, _ in group:
                features = PlayerFeatures.build(
                    histories.get(request.player_lookup),
                    context.get(request.player_lookup),
                    game_date,
                    request.player_lookup,
                )
                predictions = await self.predict(request, features)
                published += predictions
                done.append(
                    PlayerDone(
                        game_date=game_date,
                        batch_id=request.batch_id,
                        player_lookup=request.player_lookup,
                        request_id=request.request_id,
                        predictions=len(predictions),
                        done_at=self._clock.now(),
                    )
                )
            spent["predict"] += self._monotonic() - began
        began = self._monotonic()
        # Predictions first and acknowledged, then the "done" reports: a player counted done
        # by the coordinator has its predictions on the topic.
        await send_all(
            self._publisher, ((TopicName.PREDICTIONS, p.key, encode(p)) for p in published)
        )
        await send_all(
            self._publisher, ((TopicName.PREDICTION_PROGRESS, d.key, encode(d)) for d in done)
        )
        spent["publish"] = self._monotonic() - began
        self.stats.last_batch_seconds = spent
        self.stats.predictions += len(published)
        return published

    async def predict(
        self, request: PredictionRequest, features: PlayerFeatures
    ) -> list[Prediction]:
        """Every enabled system's prediction for every line of ``request`` (NO_LINE if none)."""
        lines: list[Decimal | None] = list(request.line_values) or [None]
        now = self._clock.now()
        out: list[Prediction] = []
        for system in self.systems:
            breaker = self.breakers[system.system_id]
            stats = self.stats.systems[system.system_id]
            if not breaker.allow():
                stats.skipped += 1
                continue
            try:
                answers = [(line, system.predict(features, line)) for line in lines]
                predictions = [
                    Prediction(
                        prediction_id=Prediction.make_id(
                            request.batch_id,
                            request.game_date,
                            request.player_lookup,
                            system.system_id,
                            line,
                        ),
                        game_date=request.game_date,
                        game_id=request.game_id,
                        player_lookup=request.player_lookup,
                        system_id=system.system_id,
                        current_points_line=line,
                        predicted_points=float(answer.predicted_points),
                        confidence_score=float(answer.confidence),
                        recommendation=answer.recommendation if line is not None else "NO_LINE",
                        model_version=system.model_version,
                        batch_id=request.batch_id,
                        created_at=now,
                    )
                    for line, answer in answers
                ]
            except Exception as error:  # noqa: BLE001 -- any failure of a plug-in system counts
                stats.failures += 1
                log.warning("%s failed for %s: %r", system.system_id, request.player_lookup, error)
                if breaker.record_failure():
                    await self._alert_open(breaker, error)
                continue
            breaker.record_success()
            stats.successes += 1
            stats.predictions += len(predictions)
            out += predictions
        return out

    async def _alert_open(self, breaker: CircuitBreaker, error: BaseException) -> None:
        alert = Alert.model_validate(
            {
                "kind": "circuit_open",
                "severity": "warning",
                "subject": f"prediction_system:{breaker.name}",
                "message": (
                    f"prediction system {breaker.name} failed {breaker.consecutive_failures} "
                    f"times in a row; skipped for {breaker.cooldown}"
                ),
                "details": {"last_error": repr(error)[:500], "threshold": breaker.threshold},
                "raised_at": self._clock.now(),
            }
        )
        await self._publisher.send(TopicName.ALERTS, alert.key, encode(alert))
        log.error("circuit open for prediction system %s", breaker.name)

    async def _dead_letter(self, raw: bytes, origin: Origin, error: str, error_type: str) -> None:
        letter = dead_letter(
            origin, raw, error=error, error_type=error_type, failed_at=self._clock.now()
        )
        await self._publisher.send(TopicName.DEAD_LETTERS, letter.key or "", encode(letter))
        self.stats.dead_letters += 1
        log.warning(
            "dead-lettered %s[%d]@%d: %s", origin.topic, origin.partition, origin.offset, error
        )
