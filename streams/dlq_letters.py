"""Dead letters as ``phaseflow dlq`` sees them: identity, selection, lineage, what a replay sends.

Pure functions over letters already read (no I/O); the ledger, the lineage header and the
commands that read and replay are described in :mod:`phaseflow.streams.dlq`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from phaseflow.models.events import DeadLetter

_AGE_RE: Final = re.compile(r"(\d+)([smhdw])")
_AGE_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> timedelta:
    """``"90s"``, ``"30m"``, ``"1h"``, ``"2d"``, ``"1w"`` or combinations (``"1h30m"``)."""
    compact = text.strip().replace(" ", "")
    parts = _AGE_RE.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not an age like '90s', '30m', '1h', '2d' or '1h30m'")
    return timedelta(seconds=sum(int(n) * _AGE_UNITS[u] for n, u in parts))


def format_age(age: timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    return "".join(parts[:2]) or f"{seconds}s"


@dataclass(frozen=True)
class Letter:
    """One record of the dead-letters topic."""

    partition: int  # of the dead-letters topic
    offset: int
    letter: DeadLetter
    topic: str = "dead-letters"  # the dead-letters topic's full name

    @property
    def ledger_key(self) -> str:
        """Identity of the *original* record: ``{source_topic}:{partition}:{offset}``."""
        return ledger_key(self.letter)

    @property
    def letter_id(self) -> str:
        """Identity of this letter: ``{dead_letters_topic}:{partition}:{offset}``, what a replay
        of it carries in its header and a failed replay's letter in ``replay_of``."""
        return f"{self.topic}:{self.partition}:{self.offset}"


def ledger_key(letter: DeadLetter) -> str:
    return f"{letter.source_topic}:{letter.partition}:{letter.offset}"


@dataclass(frozen=True)
class LetterFilter:
    """``--topic``, ``--reason``, ``--older-than``, ``--limit``; unset fields match all."""

    topic: str | None = None
    reason: str | None = None
    older_than: timedelta | None = None
    limit: int | None = None

    def matches(self, letter: DeadLetter, *, now: datetime, prefix: str) -> bool:
        if self.topic is not None and letter.source_topic not in {
            self.topic,
            f"{prefix}.{self.topic}",
        }:
            return False
        if self.reason is not None and letter.error_type != self.reason:
            return False
        return self.older_than is None or letter.failed_at <= now - self.older_than

    def select(self, letters: Sequence[Letter], *, now: datetime, prefix: str) -> list[Letter]:
        """Matching letters, oldest failure first, at most ``limit``."""
        chosen = sorted(
            (item for item in letters if self.matches(item.letter, now=now, prefix=prefix)),
            key=lambda item: (item.letter.failed_at, item.partition, item.offset),
        )
        return chosen if self.limit is None else chosen[: self.limit]


def unreplayed(letters: Sequence[Letter], replayed: set[str]) -> list[Letter]:
    """Letters whose original record is not in the ledger, one per original record; replays
    that failed again are not among them (see :func:`failed_again`)."""
    seen = set(replayed)
    out: list[Letter] = []
    for item in letters:
        if item.ledger_key in seen or item.letter.replay_of is not None:
            continue
        seen.add(item.ledger_key)
        out.append(item)
    return out


class Lineage:
    """Which letters are one record replayed and failed again: letters linked by
    ``replay_of``, and letters of the same original record, share a lineage key."""

    def __init__(self, letters: Sequence[Letter]) -> None:
        self._by_id = {item.letter_id: item for item in letters}

    def chain(self, item: Letter) -> list[str]:
        """Letter ids from the first failure to ``item``; a first id whose letter is gone
        (retention) is still named."""
        ids = [item.letter_id]
        current: Letter | None = item
        while current is not None and current.letter.replay_of is not None:
            parent_id = current.letter.replay_of
            if parent_id in ids:  # a cycle cannot be written by replay; stop rather than loop
                break
            ids.append(parent_id)
            current = self._by_id.get(parent_id)
        return ids[::-1]

    def key(self, item: Letter) -> str:
        """The original record of the first letter of the chain, or the first id if gone."""
        first = self._by_id.get(self.chain(item)[0])
        return first.ledger_key if first is not None else self.chain(item)[0]


def failed_again(letters: Sequence[Letter], replayed: set[str]) -> list[Letter]:
    """Replays that failed again and were not force-replayed since: the newest letter of each
    such lineage."""
    lineage = Lineage(letters)
    newest = _newest_per_lineage(letters, lineage)
    return [
        item
        for item in newest
        if item.letter.replay_of is not None and item.ledger_key not in replayed
    ]


def _newest_per_lineage(letters: Sequence[Letter], lineage: Lineage) -> list[Letter]:
    newest: dict[str, Letter] = {}
    for item in letters:
        key = lineage.key(item)
        known = newest.get(key)
        if known is None or (item.letter.failed_at, item.offset) > (
            known.letter.failed_at,
            known.offset,
        ):
            newest[key] = item
    return sorted(
        newest.values(), key=lambda item: (item.letter.failed_at, item.partition, item.offset)
    )


def to_replay(
    letters: Sequence[Letter], replayed: set[str], *, force: bool, everything: Sequence[Letter]
) -> list[Letter]:
    """What ``replay`` sends from the selected ``letters``: without ``force`` the letters not
    replayed (never a replay that failed again); with ``force`` the newest selected letter of
    each lineage, replayed or not. ``everything`` (all letters of the topic) links lineages."""
    if not force:
        return unreplayed(letters, replayed)
    return _newest_per_lineage(letters, Lineage(everything))
