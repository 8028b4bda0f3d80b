"""What the ``phaseflow`` CLI says when a command cannot do its job: one line and an exit code.

Exit codes (README "CLI", docs/operations.md):

* ``2`` -- bad input the user can fix: an argument, a ``PHASEFLOW_*`` variable, the registry.
* ``1`` -- a service the command needs is unreachable or failed: Kafka, BigQuery, a worker.

Commands raise what they raise; :func:`run_command` is the one place that maps the failure types
known to mean one of the two to a line on stderr. Anything else is a bug in phaseflow and keeps
its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Final, TextIO

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from phaseflow.models.phases import UnknownPhaseError
from phaseflow.streams.client import (
    BrokerUnavailableError,
    CompletionNotPublishedError,
    IdempotenceUnavailableError,
    InvalidCompletionError,
)
from phaseflow.streams.core.env_check import UnknownSettingError, check_environment
from phaseflow.streams.core.registry import PhaseNotConfiguredError, RegistryError
from phaseflow.streams.core.settings import Settings, env_var

EXIT_UNAVAILABLE: Final = 1
EXIT_BAD_INPUT: Final = 2

#: google-api-core errors that mean "not reachable" rather than "refused".
_GOOGLE_UNREACHABLE: Final = frozenset(
    {"RetryError", "ServiceUnavailable", "DeadlineExceeded", "GatewayTimeout", "TransportError"}
)
#: OSErrors about a local path the user gave (bad input), not about a service.
_PATH_ERRORS: Final = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
#: How far down ``__cause__`` / ``__context__`` a known failure is looked for.
_CHAIN_DEPTH: Final = 8


class CliError(Exception):
    """A failure with a message for the user; ``str()`` is what the CLI prints."""

    exit_code: int = EXIT_UNAVAILABLE


class BadInputError(CliError):
    """The user's input is wrong (exit 2); the message says what to change."""

    exit_code = EXIT_BAD_INPUT


class ServiceUnavailableError(CliError):
    """A service the command needs cannot be reached or failed (exit 1)."""

    exit_code = EXIT_UNAVAILABLE


def load_settings(
    factory: Callable[[], Settings] = Settings, environ: Mapping[str, str] | None = None
) -> Settings:
    """The settings from the environment; a bad ``PHASEFLOW_*`` value, or a ``PHASEFLOW_*``
    variable that is no setting (renamed, removed, misspelled), is a :class:`BadInputError`
    naming the variable."""
    check_settings_environment(environ)
    try:
        return factory()
    except ValidationError as error:
        problems = "; ".join(_setting_problem(detail) for detail in error.errors())
        raise BadInputError(problems) from None


def check_settings_environment(environ: Mapping[str, str] | None = None) -> None:
    """Every ``PHASEFLOW_*`` variable is a setting or one the tests set on purpose: else a
    :class:`BadInputError` naming it and what to set instead (streams/core/env_check.py)."""
    try:
        check_environment(os.environ if environ is None else environ, Settings.model_fields)
    except UnknownSettingError as error:
        raise BadInputError(str(error)) from None


def _setting_problem(detail: ErrorDetails) -> str:
    if not detail["loc"]:
        # A check across settings (the Kafka security ones): its message names the variables;
        # its input is every setting, the SASL password too, so it is not shown.
        return (
            f"{detail['msg'].removeprefix('Value error, ')}; fix the variables (README: Settings)"
        )
    field = ".".join(str(part) for part in detail["loc"])
    if field == "kafka_sasl_password":
        return f"{env_var(field)}: {detail['msg']}; fix the variable (README: Settings)"
    return (
        f"{env_var(field)}={detail['input']!r}: {detail['msg']}; fix or unset the variable "
        "(README: Settings)"
    )


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, the exceptions it was raised from, and those of an exception group."""
    seen: set[int] = set()
    pending = [error]
    while pending and len(seen) < _CHAIN_DEPTH:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(link for link in (current.__cause__, current.__context__) if link)


def explain(error: BaseException, settings: Settings | None) -> CliError | None:
    """The user-facing failure ``error`` stands for, or None when it is not a known kind."""
    for link in _chain(error):
        known = _explain_one(link, settings)
        if known is not None:
            return known
    return None


def _explain_one(  # noqa: PLR0911 -- one return per known kind
    error: BaseException, settings: Settings | None
) -> CliError | None:
    if isinstance(error, CliError):
        return error
    if isinstance(error, (RegistryError, IdempotenceUnavailableError, InvalidCompletionError)):
        return BadInputError(str(error))
    if isinstance(error, (BrokerUnavailableError, CompletionNotPublishedError)):
        return ServiceUnavailableError(str(error))  # the client's errors are one line already
    if isinstance(error, (PhaseNotConfiguredError, UnknownPhaseError)):
        return BadInputError(str(error))
    if isinstance(error, ValidationError):
        return BadInputError(_input_problem(error))
    if isinstance(error, (KafkaConnectionError, KafkaTimeoutError)):
        return ServiceUnavailableError(_broker_problem(settings, _reason(error)))
    if isinstance(error, KafkaError):
        return ServiceUnavailableError(f"Kafka refused the request: {_reason(error)}")
    google = _google_problem(error, settings)
    if google is not None:
        return google
    if isinstance(error, _PATH_ERRORS) and error.filename is not None:
        return BadInputError(
            f"{error.filename}: {error.strerror or error}; check the path and its permissions"
        )
    if isinstance(error, (OSError, TimeoutError)):
        return ServiceUnavailableError(
            f"a service is unreachable: {_reason(error)}; check that it runs and the "
            "PHASEFLOW_* address settings"
        )
    return None


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    name = type(error).__name__
    if not text:
        return name
    return text.removeprefix(f"{name}: ").splitlines()[0]


def _input_problem(error: ValidationError) -> str:
    fields = "; ".join(
        f"{'.'.join(map(str, detail['loc']))}: {detail['msg']} (got {detail['input']!r})"
        if detail["loc"]
        # A whole-object check: its input is the whole object (settings: the password too).
        else detail["msg"]
        for detail in error.errors(include_url=False)
    )
    return f"invalid {error.title}: {fields}"


def _broker_problem(settings: Settings | None, reason: str) -> str:
    where = settings.bootstrap_servers if settings is not None else "the configured broker"
    return (
        f"cannot reach the Kafka broker at {where}: {reason}; start it (make kafka) or set "
        "PHASEFLOW_BROKER_URL"
    )


def bigquery_problem(settings: Settings | None, reason: str) -> str:
    """The line for a BigQuery that cannot be reached, naming where it was looked for."""
    endpoint = settings.bigquery_endpoint if settings is not None else None
    where = endpoint or "Google's BigQuery API"
    return (
        f"cannot reach BigQuery at {where}: {reason}; start the emulator or set "
        "PHASEFLOW_BIGQUERY_ENDPOINT (Google's API needs Application Default Credentials)"
    )


def _google_problem(error: BaseException, settings: Settings | None) -> CliError | None:
    # google-api-core / google-auth are dependencies of the BigQuery client; matched by module
    # so this layer does not import them for commands that never touch BigQuery.
    module = type(error).__module__
    if not module.startswith(("google.api_core", "google.auth", "google.cloud")):
        return None
    if module.startswith("google.auth") or type(error).__name__ in _GOOGLE_UNREACHABLE:
        return ServiceUnavailableError(bigquery_problem(settings, _reason(error)))
    return ServiceUnavailableError(f"BigQuery refused the request: {_reason(error)}")


def report(error: CliError, stderr: TextIO) -> int:
    """Print ``error`` for the user and return its exit code."""
    # A registry error has one line per problem; each gets the prefix, so each stands alone.
    stderr.writelines(f"phaseflow: error: {line}\n" for line in str(error).splitlines())
    return error.exit_code


def run_command(
    command: Callable[[], int],
    *,
    settings: Callable[[], Settings | None],
    stderr: TextIO | None = None,
) -> int:
    """Run ``command``; a known failure becomes one line on stderr and its exit code.

    ``settings`` returns the settings once loaded (None before), so messages can name the
    addresses in use.
    """
    stream = stderr or sys.stderr
    try:
        return command()
    except Exception as error:
        known = explain(error, settings())
        if known is None:
            raise
        return report(known, stream)
