"""The README and docker-compose.yml describe the settings the code really has."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from streams.settings import Settings, env_var, settings_table

ROOT = Path(__file__).resolve().parents[2]


def test_readme_settings_table_is_generated_from_the_model() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(
        r"<!-- settings-table:start -->\n(.*?)\n<!-- settings-table:end -->", readme, re.S
    )
    assert match, "README lost its settings-table markers"
    assert match.group(1) == settings_table(), (
        "README settings table is stale: regenerate it from streams.settings.settings_table()"
    )


def test_readme_shows_the_two_fresh_machine_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme
    assert "make test" in readme
    assert "phaseflow demo" in readme


def test_compose_worker_environment_matches_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "bigquery", "worker"} <= set(services)
    environment = services["worker"]["environment"]
    known = {env_var(name) for name in Settings.model_fields}
    unknown = set(environment) - known
    assert not unknown, f"compose sets variables Settings does not read: {unknown}"
    # The worker's values must parse as Settings and point at the compose services.
    values = {k: str(v) for k, v in environment.items() if "${" not in str(v)}
    settings = Settings.model_validate(
        {k.removeprefix("PHASEFLOW_").lower(): v for k, v in values.items()}
    )
    kafka_port = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].rsplit(":", 1)[1]
    assert settings.bootstrap_servers == f"kafka:{kafka_port}"
    assert settings.bigquery_endpoint is not None
    assert settings.bigquery_endpoint.startswith("http://bigquery:")
    bq_port = settings.bigquery_endpoint.rsplit(":", 1)[1]
    assert bq_port in " ".join(map(str, services["bigquery"]["command"]))
    assert f"{settings.web_port}:{settings.web_port}" in services["worker"]["ports"]
