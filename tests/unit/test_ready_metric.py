"""``phaseflow_worker_ready`` and ``phaseflow_worker_not_ready_cause`` on /metrics follow what
each readiness check (``GET /ready``, and every scrape) found."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from phaseflow.streams.core.metrics import NOT_READY_CAUSES, Metrics
from phaseflow.streams.web.health import BrokerUnreachableError, ReadinessCheck


class World:
    """The inputs of a readiness check, each switchable."""

    def __init__(self) -> None:
        self.calm()

    def calm(self) -> None:
        """Every input as a ready worker has it."""
        self.broker_down = False
        self.assigned = 4
        self.recovering: str | None = None
        self.lag: dict[tuple[str, int], int] = {}
        self.problems: list[str] = []

    async def probe(self) -> None:
        if self.broker_down:
            raise BrokerUnreachableError("127.0.0.1:9: ConnectionRefusedError")

    def check(self, metrics: Metrics) -> ReadinessCheck:
        return ReadinessCheck(
            probe=self.probe,
            assigned_partitions=lambda: self.assigned,
            recovery_pending=lambda: self.recovering,
            lag=lambda: self.lag,
            max_lag_messages=100,
            problems=lambda: list(self.problems),
            metrics=metrics,
            cache_seconds=0.0,
        )


def served(metrics: Metrics) -> tuple[float, dict[str, float]]:
    """(phaseflow_worker_ready, {cause: value}) as /metrics serves them."""
    ready: float | None = None
    causes: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == "phaseflow_worker_ready":
                ready = sample.value
            elif sample.name == "phaseflow_worker_not_ready_cause":
                causes[sample.labels["cause"]] = sample.value
    assert ready is not None, "phaseflow_worker_ready is not served"
    return ready, causes


async def test_the_ready_series_flips_with_each_cause_of_a_503() -> None:
    world, metrics = World(), Metrics()
    check = world.check(metrics)
    # Before any check the worker has not shown it is ready; every cause is a series already.
    assert served(metrics) == (0.0, dict.fromkeys(NOT_READY_CAUSES, 0.0))

    report = await check.report()
    assert report.ready
    assert served(metrics) == (1.0, dict.fromkeys(NOT_READY_CAUSES, 0.0))

    switches: dict[str, Callable[[], object]] = {
        "broker_unreachable": lambda: setattr(world, "broker_down", True),
        "no_partitions": lambda: setattr(world, "assigned", 0),
        "recovery_pending": lambda: setattr(world, "recovering", "tables recovering (3 of 8)"),
        "lag_over_limit": lambda: setattr(world, "lag", {("t", 0): 101}),
        "notifier": lambda: world.problems.append("notifier route slack: HTTP 404"),
    }
    assert set(switches) == set(NOT_READY_CAUSES)
    for cause, switch in switches.items():
        world.calm()
        switch()
        report = await check.report()
        assert not report.ready
        assert report.causes == (cause,)
        assert len(report.reasons) == 1
        ready, causes = served(metrics)
        assert ready == 0.0
        assert causes == {each: float(each == cause) for each in NOT_READY_CAUSES}

    world.calm()
    assert (await check.report()).ready
    assert served(metrics) == (1.0, dict.fromkeys(NOT_READY_CAUSES, 0.0))


async def test_several_causes_at_once_are_all_served() -> None:
    world, metrics = World(), Metrics()
    world.assigned = 0
    world.lag = {("t", 0): 500}
    world.problems = ["notifier route pd: HTTP 400"]
    report = await world.check(metrics).report()
    assert report.causes == ("no_partitions", "lag_over_limit", "notifier")
    ready, causes = served(metrics)
    assert ready == 0.0
    assert {cause for cause, value in causes.items() if value == 1.0} == set(report.causes)
