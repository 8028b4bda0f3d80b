"""Prometheus series computed at scrape time from state the service already keeps.

Collectors read their source on every scrape instead of being updated as things happen, so the
figures follow the state (a restored table, a date that expired) and are never counted twice
when a changelog is replayed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from phaseflow.agents.phase_timing import DateTiming


class PhaseTimingCollector(Collector):
    """Per game date this worker holds: phase latency, end-to-end latency, SLA breaches."""

    def __init__(self, timings: Callable[[], Iterable[DateTiming]]) -> None:
        self._timings = timings

    def collect(self) -> Iterator[Metric]:
        phase = GaugeMetricFamily(
            "phaseflow_phase_latency_seconds",
            "From a phase's first completion for the date to its completion (its trigger, or "
            "its last expected processor); completed phases only.",
            labels=["game_date", "phase"],
        )
        end_to_end = GaugeMetricFamily(
            "phaseflow_end_to_end_latency_seconds",
            "From the date's first completion (phase 1's) to the last phase's completion.",
            labels=["game_date"],
        )
        breached = GaugeMetricFamily(
            "phaseflow_sla_breached",
            "1 for each phase of a date whose sla_breach alert was raised.",
            labels=["game_date", "phase"],
        )
        for timing in self._timings():
            day = timing.game_date.isoformat()
            for entry in timing.phases:
                if entry.duration_seconds is not None:
                    phase.add_metric([day, str(entry.phase)], entry.duration_seconds)
                if entry.sla_breached_at is not None:
                    breached.add_metric([day, str(entry.phase)], 1.0)
            if timing.end_to_end_seconds is not None:
                end_to_end.add_metric([day], timing.end_to_end_seconds)
        yield from (phase, end_to_end, breached)

    def describe(self) -> Iterator[Metric]:
        # Names only: collecting at registration would read state that is not there yet.
        yield GaugeMetricFamily("phaseflow_phase_latency_seconds", "", labels=[])
        yield GaugeMetricFamily("phaseflow_end_to_end_latency_seconds", "", labels=[])
        yield GaugeMetricFamily("phaseflow_sla_breached", "", labels=[])


class SystemResults(Protocol):
    """Per prediction system: requests it answered, failed on, or skipped (circuit open)."""

    successes: int
    failures: int
    skipped: int


class PredictionSystemCollector(Collector):
    """Per prediction system: results by outcome and the success rate of the calls made."""

    def __init__(self, systems: Callable[[], Mapping[str, SystemResults]]) -> None:
        self._systems = systems

    def collect(self) -> Iterator[Metric]:
        results = CounterMetricFamily(
            "phaseflow_prediction_system_results",
            "Prediction requests per system and outcome (success, failure, skipped: circuit open).",
            labels=["system_id", "outcome"],
        )
        rate = GaugeMetricFamily(
            "phaseflow_prediction_system_success_ratio",
            "Successes / (successes + failures) per system since the worker started.",
            labels=["system_id"],
        )
        for system_id, stats in sorted(self._systems().items()):
            for outcome, count in (
                ("success", stats.successes),
                ("failure", stats.failures),
                ("skipped", stats.skipped),
            ):
                results.add_metric([system_id, outcome], count)
            called = stats.successes + stats.failures
            if called:
                rate.add_metric([system_id], stats.successes / called)
        yield from (results, rate)

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily("phaseflow_prediction_system_results", "", labels=[])
        yield GaugeMetricFamily("phaseflow_prediction_system_success_ratio", "", labels=[])
