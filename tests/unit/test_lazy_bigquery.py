"""The prediction path's lazily built BigQuery client: a failed credential lookup is
remembered for a while instead of repeated for every prediction batch (each lookup asks the
GCE metadata server over HTTP; a worker without credentials spent ~a fifth of a core on it
under a completion backlog)."""

from __future__ import annotations

from typing import Any

import pytest
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import bigquery

from phaseflow.agents.predictions.wiring import LazyBigQuery
from phaseflow.streams.core.settings import Settings


class _Builds:
    """A client builder that fails until told to succeed; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail = True
        self.client: Any = object()

    def __call__(self, settings: Settings) -> bigquery.Client:
        del settings
        self.calls += 1
        if self.fail:
            raise DefaultCredentialsError("Your default credentials were not found.")  # type: ignore[no-untyped-call]
        return self.client  # type: ignore[no-any-return]


class _Monotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _lazy(builds: _Builds, clock: _Monotonic) -> LazyBigQuery:
    return LazyBigQuery(Settings(), recheck_seconds=60.0, monotonic=clock, build=builds)


def test_a_failed_lookup_is_not_repeated_until_the_recheck_time() -> None:
    builds, clock = _Builds(), _Monotonic()
    lazy = _lazy(builds, clock)
    with pytest.raises(DefaultCredentialsError, match="not found"):
        lazy()
    clock.now += 30
    for _ in range(5):
        with pytest.raises(DefaultCredentialsError, match=r"failed 30s ago; next lookup in 30s"):
            lazy()
    assert builds.calls == 1


def test_the_lookup_runs_again_after_the_recheck_time_and_the_client_is_kept() -> None:
    builds, clock = _Builds(), _Monotonic()
    lazy = _lazy(builds, clock)
    with pytest.raises(DefaultCredentialsError):
        lazy()
    clock.now += 60
    builds.fail = False
    assert lazy() is builds.client
    assert lazy() is builds.client
    assert builds.calls == 2


def test_the_failure_is_logged_once_per_lookup(caplog: pytest.LogCaptureFixture) -> None:
    builds, clock = _Builds(), _Monotonic()
    lazy = _lazy(builds, clock)
    for _ in range(3):
        with pytest.raises(DefaultCredentialsError):
            lazy()
    errors = [r for r in caplog.records if "BigQuery client not built" in r.getMessage()]
    assert len(errors) == 1
    assert "next credential lookup in 60s" in errors[0].getMessage()
