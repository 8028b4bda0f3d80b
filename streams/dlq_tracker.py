"""The worker's view of the dead letters: how many are not replayed, how many replays failed
again, and the age of the oldest of either.

The status page and the metrics read it; ``phaseflow dlq`` (:mod:`phaseflow.streams.dlq`) is
the operator's view of the same two topics.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta
from typing import Final

from aiokafka.structs import ConsumerRecord

from phaseflow.models.codec import EventDecodeError, decode
from phaseflow.models.events import DeadLetter
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicFollower, TopicName
from phaseflow.streams.dlq_letters import ledger_key

#: Latest letters the worker's tracker keeps for the status page ("last few reasons").
RECENT_LETTERS: Final = 20


class DeadLetterTracker(TopicFollower):
    """Follows the dead-letters topic and the replay ledger (no consumer group) and knows how
    many letters are not replayed and when the oldest of them failed.

    ``poll()`` reads what arrived since the last call; the first call reads both topics from
    the beginning. Letters are counted once per original record, as ``replay`` does, and in two
    kinds as ``phaseflow dlq list`` shows them: first failures (``unreplayed``) and replays that
    failed again (``failed_again``: a letter with ``replay_of``, which a plain replay skips and
    ``--force`` retries). Either leaves its count once its record is in the replay ledger.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            settings,
            TopicName.DEAD_LETTERS,
            TopicName.DEAD_LETTER_REPLAYS,
            max_batches=100,
            max_records=1000,
        )
        self._letters_topic = settings.topic(TopicName.DEAD_LETTERS)
        self._pending: dict[str, datetime] = {}
        self._failed_again: dict[str, datetime] = {}
        self._replayed: set[str] = set()
        self._recent: deque[tuple[str, DeadLetter]] = deque(maxlen=RECENT_LETTERS)

    def observe(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Account for one record of either topic."""
        if topic != self._letters_topic:
            if key is not None and value is not None:
                done = key.decode("utf-8", errors="replace")
                self._replayed.add(done)
                self._pending.pop(done, None)
                self._failed_again.pop(done, None)
            return
        try:
            letter = decode(DeadLetter, value or b"")
        except EventDecodeError:
            return
        identity = ledger_key(letter)
        if identity in self._replayed:
            return
        kind = self._pending if letter.replay_of is None else self._failed_again
        known = kind.get(identity)
        self._recent.append((identity, letter))
        kind[identity] = letter.failed_at if known is None else min(known, letter.failed_at)

    def observe_record(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self.observe(record.topic, record.key, record.value)

    @property
    def unreplayed(self) -> int:
        """First failures not replayed (what a plain ``dlq replay`` would send)."""
        return len(self._pending)

    @property
    def failed_again(self) -> int:
        """Replays that failed again and were not force-replayed since."""
        return len(self._failed_again)

    def _open(self, identity: str) -> bool:
        return identity in self._pending or identity in self._failed_again

    def recent(self) -> list[DeadLetter]:
        """The latest letters read that are not replayed, newest first (at most RECENT_LETTERS)."""
        return [letter for identity, letter in reversed(self._recent) if self._open(identity)]

    def oldest_age(self, now: datetime) -> timedelta | None:
        """Age of the oldest letter of either kind not replayed; None when there is none."""
        failed = [*self._pending.values(), *self._failed_again.values()]
        if not failed:
            return None
        return max(timedelta(0), now - min(failed))
