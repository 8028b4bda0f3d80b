"""Latency, SLA and per-system success series: in ``/status/{game_date}`` and ``/metrics``."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
from prometheus_client.parser import text_string_to_metric_families

from phaseflow.agents.predictions.systems import MovingAverageBaseline
from phaseflow.agents.readiness_agent import observe_phase_duration
from phaseflow.streams.core.metrics import Metrics
from phaseflow.streams.core.registry import SystemSpec
from phaseflow.streams.web.collectors import PhaseTimingCollector, PredictionSystemCollector
from phaseflow.streams.web.phase_status import date_latency, phase_status
from tests.fixtures.readiness_harness import Harness
from tests.unit.test_phase_timing import _complete_phase
from tests.unit.test_prediction_worker import Broken, make_worker, raw_requests

NEW_YORK = ZoneInfo("America/New_York")
GAME_DATE = date(2026, 3, 10)  # EDT: phase 5's SLA (12:45) is 16:45 UTC


def _samples(metrics: Metrics, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    return {tuple(s.labels[key] for key in labels): s.value for s in families[name].samples}


async def _day_until_phase_5(start: datetime) -> Harness:
    h = Harness(now=start)
    await _complete_phase(h, GAME_DATE, 3)
    h.clock.advance(timedelta(minutes=20))
    await _complete_phase(h, GAME_DATE, 4)  # phase 3 fired at once; phase 4 fires now
    return h


async def test_status_shows_latency_and_the_sla_before_and_after_the_alert() -> None:
    start = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    h = await _day_until_phase_5(start)
    today = h.processor.today()
    h.clock.set(datetime(2026, 3, 10, 16, 50, tzinfo=UTC))  # past the SLA, before any tick

    served = phase_status(
        h.registry, h.processor, GAME_DATE, today, zone=NEW_YORK, now=h.clock.now()
    )
    orjson.dumps(served)
    phases = {p["phase"]: p for p in served}
    assert phases[4]["duration_seconds"] == 0  # all five at once: ready on the last one
    assert phases[4]["completed_at"] == "2026-03-10T12:20:00+00:00"
    assert phases[5]["sla_due_at"] == "2026-03-10T16:45:00+00:00"
    assert phases[5]["sla_breached"] is True  # a fact before the alert is raised
    assert phases[5]["sla_breached_at"] is None
    assert phases[4]["sla_due_at"] is None
    assert phases[4]["sla_breached"] is False

    await h.tick()  # the alert, recorded in the state
    served = phase_status(h.registry, h.processor, GAME_DATE, today)  # no zone: stored flag only
    phases = {p["phase"]: p for p in served}
    assert phases[5]["sla_breached_at"] == "2026-03-10T16:50:00+00:00"
    assert phases[5]["sla_breached"] is True
    assert phases[5]["sla_due_at"] is None

    latency = date_latency(h.registry, h.processor, GAME_DATE, today)
    assert latency == {
        "started_at": start.isoformat(),
        "completed_at": None,
        "end_to_end_seconds": None,
    }


async def test_metrics_expose_phase_latency_end_to_end_and_breaches() -> None:
    start = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    h = await _day_until_phase_5(start)
    metrics = Metrics()
    metrics.registry.register(PhaseTimingCollector(h.processor.date_timings))
    latency = _samples(metrics, "phaseflow_phase_latency_seconds", "game_date", "phase")
    assert latency == {("2026-03-10", "3"): 0.0, ("2026-03-10", "4"): 0.0}
    assert _samples(metrics, "phaseflow_sla_breached", "game_date", "phase") == {}

    h.clock.set(datetime(2026, 3, 10, 17, 0, tzinfo=UTC))
    await h.tick()
    assert _samples(metrics, "phaseflow_sla_breached", "game_date", "phase") == {
        ("2026-03-10", "5"): 1.0,
        ("2026-03-10", "6"): 1.0,
    }
    assert _samples(metrics, "phaseflow_end_to_end_latency_seconds", "game_date") == {}
    await _complete_phase(h, GAME_DATE, 5)
    h.clock.advance(timedelta(minutes=7))
    await _complete_phase(h, GAME_DATE, 6)
    # Phase 3 was the first phase seen: end to end runs from its first completion.
    end_to_end = _samples(metrics, "phaseflow_end_to_end_latency_seconds", "game_date")
    assert end_to_end == {("2026-03-10",): (h.clock.now() - start).total_seconds()}


async def test_a_fired_trigger_observes_the_finished_phase_duration() -> None:
    h = Harness(now=datetime(2026, 3, 11, 9, 0, tzinfo=UTC))
    first, *rest = ["p2_odds_game_lines", "p2_nbacom_gamebook_pdf", "p2_nbacom_boxscores"]
    await h.complete(first, 2, game_date=GAME_DATE)
    h.clock.advance(timedelta(minutes=12))
    fired = [t for name in rest for t in await h.complete(name, 2, game_date=GAME_DATE)]
    metrics = Metrics()
    for trigger in fired:
        observe_phase_duration(h.processor, metrics, trigger)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    observed = {
        (s.name.rsplit("_", 1)[1], s.labels["phase"]): s.value
        for s in families["phaseflow_phase_duration_seconds"].samples
        if s.name.endswith(("_sum", "_count"))
    }
    assert observed == {("sum", "2"): 12 * 60.0, ("count", "2"): 1.0}


async def test_per_system_results_and_success_ratio() -> None:
    spec_ok = SystemSpec(system_id="moving_average_baseline_v1")
    spec_bad = SystemSpec(system_id="broken_v1", breaker_threshold=3)
    worker, _, _, _ = make_worker([(MovingAverageBaseline(), spec_ok), (Broken(), spec_bad)])
    await worker.handle_batch(raw_requests(10))
    metrics = Metrics()
    metrics.registry.register(PredictionSystemCollector(lambda: worker.stats.systems))
    results = _samples(metrics, "phaseflow_prediction_system_results", "system_id", "outcome")
    assert results == {
        ("moving_average_baseline_v1", "success"): 10.0,
        ("moving_average_baseline_v1", "failure"): 0.0,
        ("moving_average_baseline_v1", "skipped"): 0.0,
        ("broken_v1", "success"): 0.0,
        ("broken_v1", "failure"): 3.0,
        ("broken_v1", "skipped"): 7.0,
    }
    assert _samples(metrics, "phaseflow_prediction_system_success_ratio", "system_id") == {
        ("broken_v1",): 0.0,
        ("moving_average_baseline_v1",): 1.0,
    }
