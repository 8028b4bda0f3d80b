"""Workers: one history query per batch, every (player, system, line) key, breakers, DLQ."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from phaseflow.agents.predictions.features import PlayerFeatures
from phaseflow.agents.predictions.history import HistoryLoader
from phaseflow.agents.predictions.messages import PlayerDone, decode_progress
from phaseflow.agents.predictions.source import SourceRow, build_requests
from phaseflow.agents.predictions.systems import (
    MovingAverageBaseline,
    SystemOutput,
    enabled_systems,
)
from phaseflow.agents.predictions.worker import PredictionWorker
from phaseflow.models.codec import decode, encode
from phaseflow.models.events import Alert, DeadLetter, Prediction
from phaseflow.streams.core.clock import ManualClock
from phaseflow.streams.core.envelope import Origin
from phaseflow.streams.core.registry import SystemSpec, load_registry
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.seed import generate
from tests.fixtures.prediction_fakes import DAY, T0, FakeRunner, ListPublisher

DATA = generate(DAY, players=60, history_games=20)
SYSTEM_IDS = [system.system_id for system, _ in enabled_systems(load_registry(None))]


def runner() -> FakeRunner:
    def parse(rows: list[dict[str, object]]) -> list[dict[str, object]]:
        return [{**r, "game_date": date.fromisoformat(str(r["game_date"]))} for r in rows]

    return FakeRunner(parse(DATA.history), parse(DATA.context))


def make_worker(
    systems: list[tuple[object, SystemSpec]] | None = None,
) -> tuple[PredictionWorker, ListPublisher, FakeRunner, ManualClock]:
    clock = ManualClock(T0)
    fake = runner()
    loader = HistoryLoader(fake, project="p", dataset="d", clock=clock, games=20)
    publisher = ListPublisher()
    worker = PredictionWorker(
        systems=systems or enabled_systems(load_registry(None)),  # type: ignore[arg-type]
        features=loader,
        publisher=publisher,
        clock=clock,
    )
    return worker, publisher, fake, clock


def raw_requests(
    players: int, lines: tuple[str, ...] = ("20.5", "21.5")
) -> list[tuple[bytes, Origin]]:
    rows = [
        SourceRow(p.player_lookup, "G1", Decimal(line))
        for p in DATA.players[:players]
        for line in lines
    ]
    requests = build_requests(rows, game_date=DAY, batch_id="B1", requested_at=T0)
    return [(encode(r), Origin("req", 0, i, r.key.encode())) for i, r in enumerate(requests)]


async def test_a_batch_is_one_history_query_and_every_key_appears() -> None:
    worker, publisher, fake, _ = make_worker()
    items = raw_requests(50)
    predictions = await worker.handle_batch(items)
    assert fake.calls == ["context", "history"]
    keys = {k for k, _ in publisher.on(TopicName.PREDICTIONS)}
    expected = {
        f"2026-01-15:{p.player_lookup}:{system}:{line}"
        for p in DATA.players[:50]
        for system in SYSTEM_IDS
        for line in ("20.5", "21.5")
    }
    assert keys == expected
    assert len(predictions) == 50 * len(SYSTEM_IDS) * 2
    assert all(
        p.key == k
        for p, (k, _) in zip(predictions, publisher.on(TopicName.PREDICTIONS), strict=True)
    )
    done = [decode_progress(v) for _, v in publisher.on(TopicName.PREDICTION_PROGRESS)]
    assert len(done) == 50
    assert all(isinstance(d, PlayerDone) and d.predictions == len(SYSTEM_IDS) * 2 for d in done)


async def test_a_repeated_request_yields_the_same_keys_and_ids_and_hits_the_cache() -> None:
    worker, _publisher, fake, clock = make_worker()
    items = raw_requests(10)
    first = await worker.handle_batch(items)
    clock.advance(timedelta(minutes=1))
    second = await worker.handle_batch(items)
    assert [(p.key, p.prediction_id) for p in first] == [(p.key, p.prediction_id) for p in second]
    assert [p.predicted_points for p in first] == [p.predicted_points for p in second]
    assert fake.calls == ["context", "history"]  # the second batch was served from memory


async def test_duplicates_inside_one_batch_are_predicted_once() -> None:
    worker, publisher, _, _ = make_worker()
    items = raw_requests(3)
    await worker.handle_batch(items + items)
    assert len(publisher.on(TopicName.PREDICTIONS)) == 3 * len(SYSTEM_IDS) * 2
    assert worker.stats.duplicates_in_batch == 3


async def test_no_line_gives_one_no_line_prediction_per_system() -> None:
    worker, publisher, _, _ = make_worker()
    request = build_requests(
        [SourceRow(DATA.players[0].player_lookup, "G1", None)],
        game_date=DAY,
        batch_id="B",
        requested_at=T0,
    )[0]
    await worker.handle_batch([(encode(request), Origin("req", 0, 0, None))])
    got = [decode(Prediction, v) for _, v in publisher.on(TopicName.PREDICTIONS)]
    assert [p.recommendation for p in got] == ["NO_LINE"] * len(SYSTEM_IDS)
    assert [p.system_id for p in got] == SYSTEM_IDS
    assert all(p.key.endswith(":NO_LINE") for p in got)


@dataclass(frozen=True)
class Broken:
    system_id: str = "broken_v1"
    model_version: str = "x"

    def predict(self, features: PlayerFeatures, line: Decimal | None) -> SystemOutput:  # noqa: ARG002
        raise RuntimeError("model file missing")


async def test_a_failing_system_opens_its_breaker_and_the_others_carry_on() -> None:
    spec_ok = SystemSpec(system_id="moving_average_baseline_v1")
    spec_bad = SystemSpec(system_id="broken_v1", breaker_threshold=3)
    worker, publisher, _, _ = make_worker(
        [(MovingAverageBaseline(), spec_ok), (Broken(), spec_bad)]
    )
    await worker.handle_batch(raw_requests(10))
    stats = worker.stats.systems
    assert stats["broken_v1"].failures == 3
    assert stats["broken_v1"].skipped == 7
    assert stats["moving_average_baseline_v1"].predictions == 20
    assert worker.breakers["broken_v1"].state == "open"
    alerts = [decode(Alert, v) for _, v in publisher.on(TopicName.ALERTS)]
    assert [(a.kind, a.subject) for a in alerts] == [
        ("circuit_open", "prediction_system:broken_v1")
    ]
    done = [decode_progress(v) for _, v in publisher.on(TopicName.PREDICTION_PROGRESS)]
    assert len(done) == 10


async def test_bad_requests_and_an_unreachable_store_go_to_dead_letters() -> None:
    worker, publisher, fake, _ = make_worker()
    await worker.handle_batch([(b"{}", Origin("req", 1, 5, b"k")), *raw_requests(2)])
    letters = [decode(DeadLetter, v) for _, v in publisher.on(TopicName.DEAD_LETTERS)]
    assert [(d.offset, d.error_type) for d in letters] == [(5, "missing_field")]
    fake.fail = True
    worker2, publisher2, fake2, _ = make_worker()
    fake2.fail = True
    await worker2.handle_batch(raw_requests(2))
    letters = [decode(DeadLetter, v) for _, v in publisher2.on(TopicName.DEAD_LETTERS)]
    assert [d.error_type for d in letters] == ["history_unavailable"] * 2
    assert publisher2.on(TopicName.PREDICTIONS) == []
