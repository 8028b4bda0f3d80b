"""Shared pieces of the Faust wiring: a lazily built BigQuery client, the query runner, the
history loader and slate source built from settings, and what the feature hands the app."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from google.auth.exceptions import GoogleAuthError
from google.cloud import bigquery

from phaseflow.agents.predictions.bq import QueryRunner
from phaseflow.agents.predictions.coordinator import Coordinator
from phaseflow.agents.predictions.history import HistoryLoader
from phaseflow.agents.predictions.request_consumer import PredictionRequestConsumer
from phaseflow.agents.predictions.source import BigQuerySlateSource
from phaseflow.agents.predictions.worker import PredictionWorker
from phaseflow.streams.core.bigquery_clients import RetryPolicy, make_bigquery_client
from phaseflow.streams.core.clock import Clock
from phaseflow.streams.core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictionFeature:
    """What ``phaseflow.agents.predictions.install`` built: the app keeps it in its components
    (``POST /coordinator/*``, the per-system series, tests)."""

    coordinator: Coordinator
    worker: PredictionWorker
    requests: PredictionRequestConsumer
    history_loader: HistoryLoader


#: After a failed credential lookup, how long the client is not built again: each lookup asks
#: the environment, the gcloud files and the GCE metadata server (HTTP, three tries), and a
#: worker without credentials would otherwise repeat it for every prediction batch.
CREDENTIALS_RECHECK_SECONDS: Final = 60.0


class LazyBigQuery:
    """One BigQuery client per worker, built on first use (a worker that never predicts never
    looks up credentials) and closed at shutdown. A failed credential lookup is remembered
    for ``recheck_seconds``: calls in that time fail at once with the same error."""

    def __init__(
        self,
        settings: Settings,
        *,
        recheck_seconds: float = CREDENTIALS_RECHECK_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        build: Callable[[Settings], bigquery.Client] = make_bigquery_client,
    ) -> None:
        self._settings = settings
        self._build = build
        self._client: bigquery.Client | None = None
        self._lock = threading.Lock()
        self._recheck_seconds = recheck_seconds
        self._monotonic = monotonic
        #: (when, error) of the last failed lookup, while it is remembered.
        self._failed: tuple[float, GoogleAuthError] | None = None

    def __call__(self) -> bigquery.Client:
        with self._lock:
            if self._client is not None:
                return self._client
            now = self._monotonic()
            if self._failed is not None and now - self._failed[0] < self._recheck_seconds:
                at, error = self._failed
                retry_in = self._recheck_seconds - (now - at)
                raise type(error)(
                    f"{error} (credential lookup failed {now - at:.0f}s ago; "
                    f"next lookup in {retry_in:.0f}s)"
                ) from error
            try:
                self._client = self._build(self._settings)
            except GoogleAuthError as error:
                self._failed = (now, error)
                # One line, no traceback: the caller reports what it could not do.
                log.warning(
                    "BigQuery client not built: %s (next credential lookup in %.0fs)",
                    error,
                    self._recheck_seconds,
                )
                raise
            self._failed = None
            return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()  # type: ignore[no-untyped-call]


def query_runner(settings: Settings, lazy: LazyBigQuery) -> QueryRunner:
    return QueryRunner(
        lazy,
        timeout_seconds=settings.bigquery_timeout_seconds,
        policy=RetryPolicy.from_settings(settings),
    )


def history_loader(settings: Settings, runner: QueryRunner, clock: Clock) -> HistoryLoader:
    return HistoryLoader(
        runner,
        project=settings.bigquery_project,
        dataset=settings.bigquery_dataset,
        clock=clock,
        games=settings.prediction_history_games,
        ttl=timedelta(seconds=settings.prediction_cache_ttl_seconds),
        max_players_per_query=max(settings.prediction_batch_size, 1),
    )


def slate_source(settings: Settings, runner: QueryRunner) -> BigQuerySlateSource:
    return BigQuerySlateSource(
        runner, project=settings.bigquery_project, dataset=settings.bigquery_dataset
    )
