"""A failed BigQuery call as one line (streams/core/bigquery_errors.py): the point of a
connection failure ("Connection refused") first, not at the end of urllib3's nested repr."""

from __future__ import annotations

import pytest
import requests
from google.api_core import exceptions as gexc

from phaseflow.streams.core.bigquery_errors import describe_bigquery_error
from phaseflow.streams.local.ports import free_port


@pytest.fixture
def refused() -> requests.exceptions.ConnectionError:
    """What the BigQuery client raises for an endpoint nothing listens on (a real one)."""
    url = f"http://127.0.0.1:{free_port()}/bigquery/v2/projects/demo/datasets/d"
    with pytest.raises(requests.exceptions.ConnectionError) as caught:
        requests.get(url, timeout=5)
    assert "Max retries exceeded" in str(caught.value)  # the long form it replaces
    return caught.value


def test_a_refused_connection_names_the_endpoint_and_the_reason(
    refused: requests.exceptions.ConnectionError,
) -> None:
    assert describe_bigquery_error(refused, "http://127.0.0.1:9050") == (
        "cannot connect to BigQuery at http://127.0.0.1:9050: Connection refused"
    )
    assert describe_bigquery_error(refused, None) == (
        "cannot connect to Google's BigQuery API: Connection refused"
    )


def test_a_deadline_passed_names_the_last_error(
    refused: requests.exceptions.ConnectionError,
) -> None:
    gave_up = gexc.RetryError("Timeout of 60.0s exceeded", cause=refused)
    assert describe_bigquery_error(gave_up, "http://bq:9050") == (
        "cannot connect to BigQuery at http://bq:9050: Connection refused "
        "(retried until the deadline)"
    )


def test_other_errors_keep_their_type_and_text() -> None:
    assert describe_bigquery_error(gexc.ServiceUnavailable("try again"), None) == (
        "ServiceUnavailable: 503 try again"
    )
    assert describe_bigquery_error(requests.exceptions.ReadTimeout("read"), "http://bq") == (
        "BigQuery at http://bq did not answer within the request timeout"
    )
    assert describe_bigquery_error(RuntimeError(), None) == "RuntimeError"
