"""``phaseflow dlq list|replay``: look at dead letters and send them back, once.

Both read ``{prefix}.dead-letters`` from the beginning without a consumer group (nothing is
committed, no worker's group is touched). ``replay`` sends each selected letter's original key
and bytes back to its ``source_topic`` and then records it in the replay ledger, the compacted
topic ``{prefix}.dead-letter-replays`` keyed ``{source_topic}:{partition}:{offset}`` (the
coordinates of the *original* record). ``replay`` reads the ledger first and skips what it
lists, so a second replay of the same letters sends nothing; two letters of the same original
record (a record dead-lettered twice after a crash) are replayed once.

Lineage: each replayed record carries the header ``phaseflow-replay-of`` with the id
``{dead_letters_topic}:{partition}:{offset}`` of the letter it replays; if it fails again, its new
letter records that id in ``replay_of``. Such a letter is a replay that failed again, not a new
failure: ``replay`` skips it (the cause is evidently not fixed) unless ``--force``, and then sends
one letter per lineage (the newest), so repeated replays never grow the topic by themselves.

The replay and its ledger record are two sends, not one transaction: if the command dies
between them, the next replay sends that one record again (at least once). Completions are
deduplicated by ``execution_id`` downstream, so a re-sent completion still counts once.

Which letters are selected, linked and sent is :mod:`phaseflow.streams.dlq_letters`; the worker's
own count of letters not replayed is :mod:`phaseflow.streams.dlq_tracker`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import orjson
from aiokafka.structs import ConsumerRecord

from phaseflow.models.codec import EventDecodeError, decode
from phaseflow.models.events import DeadLetter
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.envelope import REPLAY_OF_HEADER
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.dlq_letters import (
    Letter,
    LetterFilter,
    Lineage,
    failed_again,
    format_age,
    to_replay,
    unreplayed,
)
from phaseflow.streams.json_output import write_json
from phaseflow.streams.log_read import read_to_end
from phaseflow.streams.progress import ProgressBar
from phaseflow.streams.text_table import aligned_rows

_ERROR_WIDTH: Final = 60


# --- reading --------------------------------------------------------------------------------


async def read_topic(
    settings: Settings, topic: TopicName, *, give_up_after: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record of a catalog topic as of now, from the beginning, no group."""
    return await read_to_end(settings, topic, give_up_after=give_up_after)


async def read_letters(settings: Settings) -> tuple[list[Letter], int]:
    """The dead letters, and how many records of the topic were not readable letters."""
    letters: list[Letter] = []
    unreadable = 0
    for record in await read_topic(settings, TopicName.DEAD_LETTERS):
        try:
            letter = decode(DeadLetter, record.value or b"")
        except EventDecodeError:
            unreadable += 1
            continue
        letters.append(Letter(record.partition, record.offset, letter, record.topic))
    return letters, unreadable


async def read_ledger(settings: Settings) -> set[str]:
    """Ledger keys of original records already replayed."""
    return {
        record.key.decode("utf-8", errors="replace")
        for record in await read_topic(settings, TopicName.DEAD_LETTER_REPLAYS)
        if record.key is not None and record.value is not None
    }


# --- commands -------------------------------------------------------------------------------


def _truncate(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _short_id(letter_id: str, item: Letter) -> str:
    """``[partition]@offset`` for a letter of the same dead-letters topic, else the full id."""
    parts = letter_id.rsplit(":", 2)
    if len(parts) == 3 and parts[0] == item.topic:
        return f"[{parts[1]}]@{parts[2]}"
    return letter_id


def _replayed_cell(item: Letter, replayed: set[str]) -> str:
    if item.ledger_key in replayed:
        return "yes"
    return "failed again" if item.letter.replay_of is not None else "no"


def format_letters(
    letters: Sequence[Letter],
    replayed: set[str],
    now: datetime,
    *,
    full: bool = False,
    lineage: Lineage | None = None,
) -> str:
    """One row per letter. ``full``: the whole error and the lineage (every letter id from the
    first failure to this one) instead of the letter it replays."""
    lineage = lineage or Lineage(letters)
    last = "LINEAGE" if full else "REPLAY_OF"
    header = ("FAILED_AT", "AGE", "LETTER", "SOURCE", "KEY", "ERROR_TYPE", "REPLAYED", last)
    cells = [(*header, "ERROR")]
    for item in letters:
        letter = item.letter
        if full:
            link = " > ".join(_short_id(letter_id, item) for letter_id in lineage.chain(item))
        else:
            link = _short_id(letter.replay_of, item) if letter.replay_of is not None else "-"
        error = " ".join(letter.error.split())
        cells.append(
            (
                letter.failed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                format_age(now - letter.failed_at),
                f"[{item.partition}]@{item.offset}",
                f"{letter.source_topic}[{letter.partition}]@{letter.offset}",
                letter.key if letter.key is not None else "-",
                letter.error_type,
                _replayed_cell(item, replayed),
                link,
                error if full else _truncate(error, _ERROR_WIDTH),
            )
        )
    return "\n".join(aligned_rows(cells))


def summary(letters: Sequence[Letter], replayed: set[str], now: datetime) -> str:
    """``N dead letters, M not replayed[, K replays failed again (...)]; oldest not replayed:
    AGE``."""
    pending = unreplayed(letters, replayed)
    line = f"{len(letters)} dead letter(s), {len(pending)} not replayed"
    again = failed_again(letters, replayed)
    if again:
        line += f", {len(again)} replay(s) failed again (replay skips them unless --force)"
    if pending:
        oldest = min(item.letter.failed_at for item in pending)
        line += f"; oldest not replayed: {format_age(now - oldest)}"
    return line


def letters_document(
    letters: Sequence[Letter],
    replayed: set[str],
    now: datetime,
    *,
    lineage: Lineage,
    unreadable: int,
) -> dict[str, Any]:
    """``phaseflow dlq list --json``: the table's rows in full (whole error, lineage) and the
    summary line's counts."""
    pending = unreplayed(letters, replayed)
    oldest = min((item.letter.failed_at for item in pending), default=None)
    return {
        "letters": [
            {
                "letter_id": item.letter_id,
                "failed_at": item.letter.failed_at,
                "age_seconds": (now - item.letter.failed_at).total_seconds(),
                "source_topic": item.letter.source_topic,
                "source_partition": item.letter.partition,
                "source_offset": item.letter.offset,
                "key": item.letter.key,
                "error_type": item.letter.error_type,
                "error": item.letter.error,
                "replayed": _replayed_cell(item, replayed),
                "replay_of": item.letter.replay_of,
                "lineage": lineage.chain(item),
            }
            for item in letters
        ],
        "count": len(letters),
        "not_replayed": len(pending),
        "failed_again": len(failed_again(letters, replayed)),
        "oldest_not_replayed_age_seconds": (
            None if oldest is None else (now - oldest).total_seconds()
        ),
        "unreadable": unreadable,
    }


async def list_command(
    settings: Settings,
    selection: LetterFilter,
    *,
    out: TextIO,
    full: bool = False,
    as_json: bool = False,
) -> int:
    # Catalog topics only: reading a missing topic could auto-create it with broker defaults
    # (the ledger must be compacted).
    await ensure_topics(settings)
    letters, unreadable = await read_letters(settings)
    replayed = await read_ledger(settings)
    now = datetime.now(UTC)
    chosen = selection.select(letters, now=now, prefix=settings.topic_prefix)
    lineage = Lineage(letters)  # all letters: a filtered-out first failure still links
    if as_json:
        document = letters_document(chosen, replayed, now, lineage=lineage, unreadable=unreadable)
        write_json(out, document)
        return 0
    out.write(format_letters(chosen, replayed, now, full=full, lineage=lineage) + "\n")
    out.write(summary(chosen, replayed, now) + "\n")
    if unreadable:
        out.write(f"({unreadable} record(s) on the topic are not readable dead letters)\n")
    return 0


def _ledger_value(item: Letter, settings: Settings, replayed_at: datetime, target: Any) -> bytes:
    return orjson.dumps(
        {
            "source_topic": item.letter.source_topic,
            "partition": item.letter.partition,
            "offset": item.letter.offset,
            "dead_letter_partition": item.partition,
            "dead_letter_offset": item.offset,
            "dead_letters_topic": settings.topic(TopicName.DEAD_LETTERS),
            "letter_id": item.letter_id,
            "replay_of": item.letter.replay_of,
            "replayed_to_partition": target.partition,
            "replayed_to_offset": target.offset,
            "replayed_at": replayed_at.isoformat(),
        }
    )


def replay_plan(
    letters: Sequence[Letter], matching: Sequence[Letter], replayed: set[str], *, force: bool
) -> tuple[list[Letter], str]:
    """The letters to send (before ``--limit``) and the line saying what was left out."""
    if force:
        todo = to_replay(matching, replayed, force=True, everything=letters)
        return todo, (
            f"{len(matching)} matching dead letter(s): --force, one per lineage "
            f"(the newest), {len(matching) - len(todo)} older letter(s) of the same record(s)"
        )
    todo = unreplayed(matching, replayed)
    fresh = [item for item in matching if item.letter.replay_of is None]
    again = len(matching) - len(fresh)
    skipped = len(fresh) - len(unreplayed(fresh, set()))  # duplicates of one record
    already = len(unreplayed(fresh, set())) - len(todo)
    return todo, (
        f"{len(matching)} matching dead letter(s): {already} already replayed, "
        f"{again} failed again after a replay (--force sends them), "
        f"{skipped} duplicate(s)"
    )


async def replay_command(
    settings: Settings,
    selection: LetterFilter,
    *,
    dry_run: bool,
    out: TextIO,
    force: bool = False,
) -> int:
    await ensure_topics(settings)  # the ledger topic exists even on older deployments
    letters, _ = await read_letters(settings)
    replayed = await read_ledger(settings)
    now = datetime.now(UTC)
    # Already-replayed letters are dropped before --limit, so "--limit 10" means 10 new ones.
    matching = LetterFilter(selection.topic, selection.reason, selection.older_than).select(
        letters, now=now, prefix=settings.topic_prefix
    )
    todo, accounting = replay_plan(letters, matching, replayed, force=force)
    if selection.limit is not None:
        todo = todo[: selection.limit]
    out.write(f"{accounting}, {len(todo)} to replay\n")
    if dry_run:
        out.write(format_letters(todo, replayed, now, lineage=Lineage(letters)) + "\n")
        out.write("dry run: nothing sent\n")
        return 0
    if not todo:
        return 0
    producer = await kafka_clients.started(
        kafka_clients.producer(
            settings,
            acks="all",
            enable_idempotence=settings.idempotent_producer,
            request_timeout_ms=30_000,
        )
    )
    bar = ProgressBar(len(todo), out, label="replaying")
    try:
        ledger = settings.topic(TopicName.DEAD_LETTER_REPLAYS)
        for item in todo:
            letter = item.letter
            key = letter.key.encode("utf-8") if letter.key is not None else None
            target = await producer.send_and_wait(
                letter.source_topic,
                value=letter.value_bytes,
                key=key,
                headers=[(REPLAY_OF_HEADER, item.letter_id.encode("utf-8"))],
            )
            await producer.send_and_wait(
                ledger,
                key=item.ledger_key.encode("utf-8"),
                value=_ledger_value(item, settings, datetime.now(UTC), target),
            )
            bar.advance()
        bar.finish()
    finally:
        await producer.stop()
    out.write(f"replayed {len(todo)} dead letter(s)\n")
    return 0


def run_dlq(
    settings: Settings,
    *,
    action: str,
    selection: LetterFilter,
    dry_run: bool = False,
    force: bool = False,
    full: bool = False,
    out: TextIO | None = None,
    as_json: bool = False,
) -> int:
    """``phaseflow dlq list|replay`` (``as_json``: ``list`` as one JSON document)."""
    stream = out or sys.stdout
    if action == "list":
        return asyncio.run(
            list_command(settings, selection, out=stream, full=full, as_json=as_json)
        )
    return asyncio.run(
        replay_command(settings, selection, dry_run=dry_run, out=stream, force=force)
    )
