"""Shared pieces of the Faust wiring: a lazily built BigQuery client, the query runner, the
history loader and slate source built from settings, and what the feature hands the app."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

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


class LazyBigQuery:
    """One BigQuery client per worker, built on first use (a worker that never predicts never
    looks up credentials) and closed at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: bigquery.Client | None = None
        self._lock = threading.Lock()

    def __call__(self) -> bigquery.Client:
        with self._lock:
            if self._client is None:
                self._client = make_bigquery_client(self._settings)
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
