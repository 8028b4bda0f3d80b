"""No ``PHASEFLOW_*`` variable is ignored silently.

pydantic-settings reads the variables of its fields and ignores every other one, so a variable
renamed when the settings were grouped (``PHASEFLOW_TOPIC_PARTITIONS``, now
``PHASEFLOW_KAFKA_TOPIC_PARTITIONS``), removed, or misspelled would leave its setting at the
default without a word. Every command checks the environment before it loads the settings
(phaseflow.streams.cli_errors.load_settings) and stops (exit 2) on such a variable, naming the
new variable, what replaced the removed one, or the closest setting.

Variables that are not settings but are set on purpose (the test suite's, the benchmarks')
are allowed by :data:`ALLOWED_PREFIXES` and :data:`ALLOWED_NAMES`; docs/settings.md lists them.

This module names the old variables on purpose (rename_settings: skip).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Final

from phaseflow.streams.core.broker_connection import ENV_PREFIX

#: Old field -> new field, from the grouping by prefix (scripts/rename_settings.py rewrites the
#: code from this same table).
RENAMED: Final[Mapping[str, str]] = {
    "topic_partitions": "kafka_topic_partitions",
    "topic_replication_factor": "kafka_topic_replication_factor",
    "producer_idempotence": "kafka_producer_idempotence",
    "broker_session_timeout_seconds": "kafka_session_timeout_seconds",
    "broker_heartbeat_interval_seconds": "kafka_heartbeat_interval_seconds",
    "commit_interval_seconds": "kafka_commit_interval_seconds",
    "ready_max_lag_messages": "lag_ready_max_messages",
    "coordinator_tick_seconds": "prediction_coordinator_tick_seconds",
    "rate_limit_per_minute": "web_rate_limit_per_minute",
}

#: Removed field -> what does its job now.
REMOVED: Final[Mapping[str, str]] = {
    "prediction_query_attempts": (
        "prediction queries retry by time, PHASEFLOW_BIGQUERY_RETRY_SECONDS"
    ),
}

#: Variables that are not settings, set on purpose: the test suite's (``PHASEFLOW_TEST_BROKER``,
#: ``PHASEFLOW_TEST_KAFKA_VERSION``, ``PHASEFLOW_TEST_REQUIRE_CHROMIUM``, ``..._PROMTOOL``) and
#: the benchmarks' (``PHASEFLOW_BENCH_BROKER_KIND``).
ALLOWED_PREFIXES: Final = ("PHASEFLOW_TEST_", "PHASEFLOW_BENCH_")
#: Single variables that are not settings: the status-page test rewrites its screenshot.
ALLOWED_NAMES: Final = frozenset({"PHASEFLOW_UPDATE_SCREENSHOT"})


class UnknownSettingError(ValueError):
    """A ``PHASEFLOW_*`` variable no setting reads; the message says what to set instead."""


def env_name(field: str) -> str:
    """The variable of ``field``."""
    return f"{ENV_PREFIX}{field.upper()}"


def variable_problem(variable: str, fields: Iterable[str]) -> str | None:
    """What is wrong with ``variable`` when only ``fields`` are settings; None when nothing."""
    name = variable.upper()
    if not name.startswith(ENV_PREFIX) or name.startswith(ALLOWED_PREFIXES):
        return None
    known = {env_name(field) for field in fields}
    if name in known or name in ALLOWED_NAMES:
        return None
    field = name.removeprefix(ENV_PREFIX).lower()
    if field in RENAMED:
        return f"{variable} is now {env_name(RENAMED[field])}"
    if field in REMOVED:
        return f"{variable} was removed: {REMOVED[field]}"
    # Compared without the prefix every name shares; a misspelled old name suggests the new one.
    candidates = {known_name.removeprefix(ENV_PREFIX).lower(): known_name for known_name in known}
    candidates |= {old: env_name(new) for old, new in RENAMED.items()}
    close = difflib.get_close_matches(field, list(candidates), n=1)
    if close:
        return f"{variable} is not a setting; did you mean {candidates[close[0]]}?"
    return f"{variable} is not a setting (docs/settings.md lists them)"


def environment_problems(environ: Mapping[str, str], fields: Iterable[str]) -> list[str]:
    """One line per ``PHASEFLOW_*`` variable of ``environ`` that no field of ``fields`` reads."""
    field_names = tuple(fields)
    problems = (variable_problem(variable, field_names) for variable in sorted(environ))
    return [problem for problem in problems if problem is not None]


def check_environment(environ: Mapping[str, str], fields: Iterable[str]) -> None:
    """Raise :class:`UnknownSettingError` (all problems on one line) unless every
    ``PHASEFLOW_*`` variable of ``environ`` is a setting of ``fields`` or allowed."""
    problems = environment_problems(environ, fields)
    if problems:
        raise UnknownSettingError("; ".join(problems))


def renamed_variables(environ: Mapping[str, str], fields: Iterable[str]) -> list[str]:
    """The problems of old variables whose new name is one of ``fields`` (the processors'
    client checks only those: the worker's settings may share its environment)."""
    wanted = set(fields)
    return [
        f"{variable} is now {env_name(RENAMED[old])}"
        for variable in sorted(environ)
        if (old := variable.upper().removeprefix(ENV_PREFIX).lower()) in RENAMED
        and variable.upper().startswith(ENV_PREFIX)
        and RENAMED[old] in wanted
    ]
