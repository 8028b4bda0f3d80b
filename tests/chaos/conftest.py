"""The fault-injection suite (marker ``chaos``): faults against a whole worker while events flow.

Each test records what it measured in the session's :class:`ChaosReport`; the report is printed
after the run and written to ``.cache/chaos-report.json``. Broker, BigQuery emulator and worker
fixtures come from tests/fixtures (listed in tests/conftest.py).
"""

from __future__ import annotations

import pytest
from _pytest.terminal import TerminalReporter

from tests.chaos.report import ChaosReport

_REPORT = pytest.StashKey[ChaosReport]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_REPORT] = ChaosReport()


@pytest.fixture(scope="session")
def chaos_report(pytestconfig: pytest.Config) -> ChaosReport:
    return pytestconfig.stash[_REPORT]


def pytest_terminal_summary(
    terminalreporter: TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    report = config.stash.get(_REPORT, None)
    if report is None or not report.faults:
        return
    path = report.write()
    terminalreporter.write_sep("=", "chaos: measured recovery (seconds unless named)")
    terminalreporter.write_line(report.table())
    terminalreporter.write_line(f"written to {path}")
