"""docs/settings.md, the README and docker-compose.yml describe the settings the code really has."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from phaseflow.streams.core.settings import Settings, env_var, settings_table

ROOT = Path(__file__).resolve().parents[2]


def test_settings_doc_table_is_generated_from_the_model() -> None:
    settings_doc = (ROOT / "docs" / "settings.md").read_text()
    match = re.search(
        r"<!-- settings-table:start -->\n(.*?)\n<!-- settings-table:end -->", settings_doc, re.S
    )
    assert match, "docs/settings.md lost its settings-table markers"
    assert match.group(1) == settings_table(), (
        "docs/settings.md settings table is stale: run scripts/update_settings_table.py"
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


def test_production_compose_is_three_kafka_nodes_rf3_min_isr2_and_replicated_workers() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.production.yml").read_text())
    services = compose["services"]
    nodes = {name: svc for name, svc in services.items() if name.startswith("kafka-")}
    assert len(nodes) == 3
    voters = {svc["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for svc in nodes.values()}
    assert len(voters) == 1, "every node must name the same controller quorum"
    assert len(voters.pop().split(",")) == 3
    assert len({svc["environment"]["KAFKA_NODE_ID"] for svc in nodes.values()}) == 3
    for svc in nodes.values():
        env = svc["environment"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
    worker = services["worker"]
    assert worker["deploy"]["replicas"] >= 3
    environment = worker["environment"]
    known = {env_var(name) for name in Settings.model_fields}
    unknown = {k for k in environment if k.startswith("PHASEFLOW_")} - known
    assert not unknown, f"compose sets variables Settings does not read: {unknown}"
    values = {
        # A value the deployment supplies (`${VAR:?...}`) stands in as a placeholder.
        k.removeprefix("PHASEFLOW_").lower(): "supplied-at-deploy" if "${" in str(v) else str(v)
        for k, v in environment.items()
        if k.startswith("PHASEFLOW_")
    }
    settings = Settings.model_validate(
        values | {"kafka_ssl_cafile": __file__}  # the CA is mounted at deploy time
    )
    assert settings.kafka_topic_replication_factor == 3
    assert settings.processing_guarantee == "exactly_once"
    assert settings.kafka_topic_partitions >= worker["deploy"]["replicas"]
    # Workers talk SASL_SSL to the listener each node advertises for it.
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert environment["PHASEFLOW_KAFKA_SSL_CAFILE"] in " ".join(worker["volumes"])
    advertised = {
        listener.split("://")[1]
        for svc in nodes.values()
        for listener in svc["environment"]["KAFKA_ADVERTISED_LISTENERS"].split(",")
        if listener.startswith("SASL_SSL://")
    }
    assert sorted(settings.bootstrap_servers.split(",")) == sorted(advertised)
    assert len(advertised) == 3
