"""The one place a BigQuery client is built, so the emulator and Google's API differ only here."""

from __future__ import annotations

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_RETRY

from phaseflow.streams.settings import Settings


def make_bigquery_client(settings: Settings) -> bigquery.Client:
    """A client for `settings.bigquery_project`.

    With `bigquery_endpoint` set (the local emulator) it sends no credentials: the emulator
    accepts anonymous requests and there must be no lookup of Google credentials on a dev or
    CI machine. Unset, it uses Application Default Credentials against Google's API.
    """
    if settings.bigquery_endpoint:
        return bigquery.Client(
            project=settings.bigquery_project,
            # google-auth leaves this constructor unannotated.
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=settings.bigquery_endpoint),
        )
    return bigquery.Client(project=settings.bigquery_project)


def ensure_dataset(client: bigquery.Client, dataset_id: str, timeout: float) -> bigquery.Dataset:
    """Create `dataset_id` (bare or `project.dataset`) unless it exists; safe to call repeatedly."""
    if "." not in dataset_id:
        dataset_id = f"{client.project}.{dataset_id}"
    # The library's default retry would keep trying an unreachable endpoint for ~10 minutes.
    dataset: bigquery.Dataset = client.create_dataset(
        dataset_id, exists_ok=True, timeout=timeout, retry=DEFAULT_RETRY.with_timeout(timeout)
    )
    return dataset
