"""What a processor imports to report a finished phase: ``from phaseflow.client import ...``.

The public name of :mod:`phaseflow.streams.client` (rules in docs/client.md). Importing it loads
neither Faust nor google-cloud-bigquery nor the worker's settings.
"""

from phaseflow.streams.client import (
    BrokerUnavailableError,
    ClientSettings,
    CompletionNotPublishedError,
    CompletionPublisher,
    IdempotenceUnavailableError,
    InvalidCompletionError,
)

__all__ = [
    "BrokerUnavailableError",
    "ClientSettings",
    "CompletionNotPublishedError",
    "CompletionPublisher",
    "IdempotenceUnavailableError",
    "InvalidCompletionError",
]
