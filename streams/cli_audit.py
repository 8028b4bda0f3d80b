"""The audit trail of operator actions on the command line (docs/operations.md "Audit trail").

``phaseflow rerun``, ``dlq replay``, ``predict`` and ``seed`` each leave one
:class:`~phaseflow.models.audit.AuditRecord` on ``{prefix}.audit``, the topic the HTTP API
writes to, so the audit sink copies them into ``audit_log`` with the rest of the trail.

The record is written *after* the action, because it carries the outcome: an operator reading the
trail wants to know that a rerun was sent, not only that one was asked for. The actions
themselves publish to (or, ``seed``, write next to) the same cluster, so a broker that cannot take
the record has almost always failed the action too. When the record cannot be written the command
says so in one line on stderr and exits 1 even if the action worked: an unaudited action must not
look like a clean success to a script. Dry runs change nothing and are not audited (a read-only
command then needs no write access to the audit topic).
"""

from __future__ import annotations

import asyncio
import getpass
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final, TextIO

import orjson
from aiokafka.errors import KafkaError

from phaseflow.models.audit import AuditRecord, audit_record
from phaseflow.models.codec import encode
from phaseflow.streams.cli_errors import EXIT_UNAVAILABLE, BadInputError, CliError
from phaseflow.streams.core.clock import Clock, SystemClock
from phaseflow.streams.core.publisher import Publisher
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.side_producer import SideProducer
from phaseflow.streams.core.topics import TopicName

#: Key ids of CLI records start with this, so they never look like an HTTP API key id.
CLI_KEY_PREFIX: Final = "cli:"
#: How long the record may take to be acknowledged; the action is done by then.
AUDIT_WRITE_SECONDS: Final = 30.0

#: A failed action's message is cut to this length in the record's outcome.
_OUTCOME_CHARS: Final = 300

#: Writes one record to the audit topic and waits for the acknowledgement.
AuditWriter = Callable[[AuditRecord], Awaitable[None]]


def operator_actor(explicit: str | None) -> str:
    """Who acts: ``--actor NAME`` if given, else the OS user."""
    if explicit is not None:
        name = explicit.strip()
        if not name:
            raise BadInputError("--actor: give a name, e.g. --actor alice")
        return name
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        # No LOGNAME/USER and no passwd entry (e.g. a container with an arbitrary uid).
        raise BadInputError("cannot tell who you are from the OS; pass --actor NAME") from None


def cli_audit_record(
    *,
    actor: str,
    command: str,
    arguments: Mapping[str, str],
    outcome: str,
    clock: Clock,
    host: str,
) -> AuditRecord:
    """The record of one CLI action; ``arguments`` must hold no secrets (they are stored as is).

    ``body_sha256`` is the digest of the canonical arguments, so equal invocations compare equal
    in the table just as equal HTTP bodies do.
    """
    body = orjson.dumps(dict(arguments), option=orjson.OPT_SORT_KEYS)
    return audit_record(
        key_id=f"{CLI_KEY_PREFIX}{actor}",
        action=f"cli {command}",
        body=body,
        client=host,
        at=clock.now(),
        summary={**arguments, "outcome": outcome},
    )


def publisher_writer(publisher: Publisher) -> AuditWriter:
    """An :data:`AuditWriter` over any publisher (tests pass a fake one)."""

    async def write(record: AuditRecord) -> None:
        await publisher.send(TopicName.AUDIT, record.key, encode(record))

    return write


def side_producer_writer(settings: Settings) -> AuditWriter:
    """The production writer: a short-lived side producer (acks=all, idempotent if enabled)."""

    async def write(record: AuditRecord) -> None:
        async with SideProducer(settings) as producer:
            await publisher_writer(producer)(record)

    return write


def run_audited(
    action: Callable[[], int],
    *,
    command: str,
    arguments: Mapping[str, str],
    actor: str,
    writer: AuditWriter,
    clock: Clock | None = None,
    host: str | None = None,
    err: TextIO | None = None,
) -> int:
    """Run ``action`` (a CLI command returning its exit code), then write its audit record.

    The outcome is ``ok``, ``exit N`` or ``failed: <one line>`` when the action raised (the
    exception is re-raised after the record is written, so the CLI still prints its usual line).
    """
    trail = _Trail(
        writer=writer,
        actor=actor,
        command=command,
        arguments=arguments,
        clock=clock or SystemClock(),
        host=host or socket.gethostname(),
        err=err or sys.stderr,
    )
    try:
        code = action()
    except CliError as error:
        trail.write(f"failed: {_one_line(str(error))}")
        raise
    except BaseException as error:
        # Ctrl-C or a bug: the action may have done part of its work, so it is recorded too.
        trail.write(f"failed: {type(error).__name__}")
        raise
    if not trail.write("ok" if code == 0 else f"exit {code}"):
        return code or EXIT_UNAVAILABLE
    return code


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _OUTCOME_CHARS else line[: _OUTCOME_CHARS - 3] + "..."


@dataclass(frozen=True)
class _Trail:
    """One action's audit record, but for its outcome."""

    writer: AuditWriter
    actor: str
    command: str
    arguments: Mapping[str, str]
    clock: Clock
    host: str
    err: TextIO

    def write(self, outcome: str) -> bool:
        """Write the record; False (and one line on stderr) if it was not acknowledged."""
        record = cli_audit_record(
            actor=self.actor,
            command=self.command,
            arguments=self.arguments,
            outcome=outcome,
            clock=self.clock,
            host=self.host,
        )
        try:
            asyncio.run(asyncio.wait_for(self.writer(record), AUDIT_WRITE_SECONDS))
        except (KafkaError, OSError, TimeoutError) as error:
            reason = str(error) or type(error).__name__
            print(
                f"phaseflow {self.command}: {outcome}, but its audit record was not written to "
                f"the audit topic ({reason}); record it by hand",
                file=self.err,
            )
            return False
        return True
