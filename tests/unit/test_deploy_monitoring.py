"""deploy/: the Prometheus rules and the Grafana dashboard name only series /metrics serves."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from phaseflow.streams.app import build_app
from phaseflow.streams.core.settings import Settings

DEPLOY: Final = Path(__file__).parents[2] / "deploy"
RULES: Final = DEPLOY / "prometheus" / "phaseflow-rules.yml"
DASHBOARD: Final = DEPLOY / "grafana" / "phaseflow-dashboard.json"
#: Series Prometheus itself makes for every scrape target, not served by phaseflow.
PROMETHEUS_OWN: Final = frozenset({"up"})
_SUFFIXES: Final = ("_total", "_bucket", "_sum", "_count", "_created")
_SERIES = re.compile(r"\b(phaseflow_[a-z0-9_]+|up)\b")


@pytest.fixture(scope="module")
def served() -> set[str]:
    """Family names on /metrics of a worker with every feature that has series (notifiers on)."""
    ctx = build_app(Settings(topic_prefix="deploy", notify_webhook_url="http://127.0.0.1:1/h"))
    text = ctx.metrics.render().decode()
    return {family.name for family in text_string_to_metric_families(text)}


def is_served(name: str, families: set[str]) -> bool:
    if name in families or name in PROMETHEUS_OWN:
        return True
    return any(name.endswith(suffix) and name[: -len(suffix)] in families for suffix in _SUFFIXES)


def rule_expressions() -> dict[str, str]:
    loaded: Any = yaml.safe_load(RULES.read_text())
    return {rule["alert"]: rule["expr"] for group in loaded["groups"] for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    loaded: Any = json.loads(DASHBOARD.read_text())
    return {
        f"{panel['title']} ({target['refId']})": target["expr"]
        for panel in loaded["panels"]
        for target in panel["targets"]
    }


def test_rules_cover_the_conditions_operators_page_on() -> None:
    rules = rule_expressions()
    for wanted in (
        "PhaseflowWorkerDown",
        "PhaseflowWorkerNotReady",
        "PhaseflowConsumerLagStall",
        "PhaseflowConsumerLagStop",
        "PhaseflowSinkRowsUnwritten",
        "PhaseflowDeadLettersUnreplayed",
        "PhaseflowPhaseOverSla",
    ):
        assert wanted in rules


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_series_named_is_served(source: str, served: set[str]) -> None:
    expressions = rule_expressions() if source == "rules" else dashboard_expressions()
    assert expressions
    missing = {
        where: sorted(name for name in _SERIES.findall(expr) if not is_served(name, served))
        for where, expr in expressions.items()
    }
    assert not {where: names for where, names in missing.items() if names}
    # Each expression names at least one series (a typo'd name would not match the pattern).
    assert all(_SERIES.search(expr) for expr in expressions.values())


def test_a_misspelt_series_is_caught(served: set[str]) -> None:
    assert not is_served("phaseflow_consumer_lag_mesages", served)
    assert is_served("phaseflow_notifications_total", served)


def test_the_lag_and_ready_rules_read_the_series_they_are_about() -> None:
    rules = rule_expressions()
    for name in ("PhaseflowConsumerLagStall", "PhaseflowConsumerLagStop"):
        assert "phaseflow_group_lag_status" in rules[name]
    assert "phaseflow_worker_ready" in rules["PhaseflowWorkerNotReady"]
    panels = dashboard_expressions()
    assert any("phaseflow_group_lag_status" in expr for expr in panels.values())
    assert any("phaseflow_worker_ready" in expr for expr in panels.values())
