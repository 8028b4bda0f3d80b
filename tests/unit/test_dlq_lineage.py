"""Dead-letter lineage: a replay that fails again names the letter it replayed, and ``replay``
does not send it again unless forced (no broker; tests/integration/test_operations.py runs it
against a worker)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from phaseflow.models.codec import decode, encode
from phaseflow.models.events import DeadLetter
from phaseflow.streams.cli import _parser
from phaseflow.streams.core.envelope import REPLAY_OF_HEADER, Origin, dead_letter
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.dlq import format_letters, summary
from phaseflow.streams.dlq_letters import Letter, Lineage, failed_again, to_replay
from phaseflow.streams.dlq_tracker import DeadLetterTracker
from tests.fixtures.readiness_harness import ORIGIN, Harness

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DLQ = "pf.dead-letters"
LONG_REASON = "phase: 'phase_9_nope' is not one of the registry's phases " + "x" * 80 + " END"


def letter(
    dlq_offset: int,
    *,
    source_offset: int,
    replay_of: str | None = None,
    age: timedelta = timedelta(minutes=5),
) -> Letter:
    dead = DeadLetter.wrap(
        source_topic="pf.phase-completions",
        partition=0,
        offset=source_offset,
        key=b"2026-02-28",
        value=b"nope",
        error=LONG_REASON,
        error_type="unknown_phase",
        failed_at=NOW - age,
        replay_of=replay_of,
    )
    return Letter(1, dlq_offset, dead, DLQ)


def history() -> tuple[Letter, Letter, Letter]:
    """A letter replayed once (failed again), then forced (failed again)."""
    first = letter(3, source_offset=10, age=timedelta(hours=2))
    second = letter(8, source_offset=25, replay_of=first.letter_id, age=timedelta(hours=1))
    third = letter(12, source_offset=40, replay_of=second.letter_id, age=timedelta(minutes=1))
    return first, second, third


def test_a_letter_id_names_the_dead_letters_topic_partition_and_offset() -> None:
    first, second, _ = history()
    assert first.letter_id == "pf.dead-letters:1:3"
    assert second.letter.replay_of == first.letter_id


def test_replay_skips_a_replay_that_failed_again_unless_forced() -> None:
    first, second, third = history()
    replayed = {first.ledger_key}
    # The bug: second's original coordinates are new, so replay sent it again and again.
    assert to_replay([first, second], replayed, force=False, everything=[first, second]) == []
    # --force sends the record once, as the newest letter of its lineage.
    assert to_replay([first, second], replayed, force=True, everything=[first, second]) == [second]
    everything = [first, second, third]
    replayed.add(second.ledger_key)
    assert to_replay(everything, replayed, force=False, everything=everything) == []
    assert to_replay(everything, replayed, force=True, everything=everything) == [third]
    # A filter that leaves out the first failure still sees one lineage.
    assert to_replay([second, third], replayed, force=True, everything=everything) == [third]


def test_a_new_failure_is_still_replayed_without_force() -> None:
    first, second, _ = history()
    fresh = letter(20, source_offset=99)
    everything = [first, second, fresh]
    assert to_replay(everything, {first.ledger_key}, force=False, everything=everything) == [fresh]


def test_lineage_survives_a_first_letter_gone_by_retention() -> None:
    _, second, third = history()
    lineage = Lineage([second, third])
    assert lineage.chain(third) == ["pf.dead-letters:1:3", second.letter_id, third.letter_id]
    assert lineage.key(second) == lineage.key(third) == "pf.dead-letters:1:3"


def test_summary_counts_failed_replays_apart_from_unreplayed() -> None:
    first, second, _ = history()
    fresh = letter(20, source_offset=99, age=timedelta(minutes=30))
    items = [first, second, fresh]
    assert failed_again(items, {first.ledger_key}) == [second]
    assert summary(items, {first.ledger_key}, NOW) == (
        "3 dead letter(s), 1 not replayed, 1 replay(s) failed again (replay skips them unless "
        "--force); oldest not replayed: 30m"
    )


def test_list_shows_the_replayed_letter_and_on_request_lineage_and_full_reason() -> None:
    first, second, third = history()
    items = [first, second, third]
    replayed = {first.ledger_key, second.ledger_key}
    lines = format_letters(items, replayed, NOW).splitlines()
    assert lines[0].split() == [
        "FAILED_AT",
        "AGE",
        "LETTER",
        "SOURCE",
        "KEY",
        "ERROR_TYPE",
        "REPLAYED",
        "REPLAY_OF",
        "ERROR",
    ]
    assert lines[1].split()[2] == "[1]@3"
    assert " - " in lines[1]  # a first failure replays nothing
    assert "failed again  [1]@8" in lines[3]
    assert "…" in lines[3]
    assert "END" not in lines[3]

    full = format_letters(items, replayed, NOW, full=True).splitlines()
    assert full[0].split()[7] == "LINEAGE"
    assert "[1]@3 > [1]@8 > [1]@12" in full[3]
    assert full[3].endswith(LONG_REASON)
    assert "…" not in "\n".join(full)


def test_a_letter_without_replay_of_still_decodes() -> None:
    first, _, _ = history()
    old = orjson_without(encode(first.letter), "replay_of")
    assert decode(DeadLetter, old).replay_of is None


def orjson_without(raw: bytes, field: str) -> bytes:
    body = orjson.loads(raw)
    body.pop(field, None)
    return orjson.dumps(body)


@dataclass
class FakeRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: object


def test_origin_reads_the_replay_header_of_either_record_kind() -> None:
    as_pairs = FakeRecord("t", 0, 5, b"k", [("other", b"x"), (REPLAY_OF_HEADER, b"pf.dl:0:3")])
    as_mapping = FakeRecord("t", 0, 5, b"k", {REPLAY_OF_HEADER: b"pf.dl:0:3"})
    plain = FakeRecord("t", 0, 5, b"k", ())
    assert Origin.of(as_pairs).replay_of == "pf.dl:0:3"
    assert Origin.of(as_mapping).replay_of == "pf.dl:0:3"
    assert Origin.of(plain) == Origin("t", 0, 5, b"k")
    letter = dead_letter(
        Origin.of(as_pairs), b"raw", error="bad", error_type="not_json", failed_at=NOW
    )
    assert letter.replay_of == "pf.dl:0:3"


async def test_the_readiness_agent_records_which_letter_a_failed_replay_replayed() -> None:
    harness = Harness()
    replayed = Origin(ORIGIN.topic, ORIGIN.partition, 30, ORIGIN.key, "pf.dead-letters:2:4")
    await harness.processor.handle(b"still not json", replayed)
    await harness.processor.handle(b"not json either", ORIGIN)
    assert [letter.replay_of for letter in harness.publisher.dead_letters()] == [
        "pf.dead-letters:2:4",
        None,
    ]


def test_cli_takes_force_and_full() -> None:
    args = _parser().parse_args(["dlq", "replay", "--force"])
    assert args.force is True
    args = _parser().parse_args(["dlq", "list", "--full"])
    assert args.full is True


def test_the_worker_counts_failed_replays_apart_as_dlq_list_does() -> None:
    """The gauges (phaseflow_dead_letters_unreplayed / _failed_again) agree with
    ``summary``: a replay that failed again is not a first failure waiting for replay."""
    first, second, third = history()
    fresh = letter(20, source_offset=99, age=timedelta(minutes=30))
    tracker = DeadLetterTracker(Settings(topic_prefix="pf"))
    for item in (first, second, fresh):
        tracker.observe(DLQ, None, encode(item.letter))
    tracker.observe("pf.dead-letter-replays", first.ledger_key.encode(), b"{}")
    assert (tracker.unreplayed, tracker.failed_again) == (1, 1)
    assert tracker.oldest_age(NOW) == timedelta(hours=1)  # second: the oldest still open

    # --force replays second; it fails again as third: still one lineage waiting.
    tracker.observe("pf.dead-letter-replays", second.ledger_key.encode(), b"{}")
    tracker.observe(DLQ, None, encode(third.letter))
    assert (tracker.unreplayed, tracker.failed_again) == (1, 1)
    assert [dead.replay_of for dead in tracker.recent()] == [third.letter.replay_of, None]
