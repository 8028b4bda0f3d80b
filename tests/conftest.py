"""Shared fixtures. Service fixtures live in tests/fixtures/ as plugins, one service each."""

pytest_plugins = [
    "tests.fixtures.brokers",
    "tests.fixtures.bigquery",
    "tests.fixtures.worker",
    "tests.fixtures.chaos_report",
    "tests.fixtures.logging_state",
]
