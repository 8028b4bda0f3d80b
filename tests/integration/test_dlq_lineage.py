"""``phaseflow dlq replay`` of letters whose cause is not fixed, against a real worker: the
replays fail again and name the letter they replayed, and the next replay does not send them
again (before: 2 letters became 4, then 6, one more pair per replay)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from datetime import date

from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.dlq import (
    list_command,
    read_letters,
    read_topic,
    replay_command,
)
from phaseflow.streams.dlq_letters import Letter, LetterFilter
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from tests.fixtures.polling import poll

GAME_DATE = date(2026, 2, 1)


async def _letters(settings: Settings, want: int, within: float = 60.0) -> list[Letter]:
    """The dead letters, oldest first, once there are at least ``want`` of them."""
    found: list[Letter] = []

    async def enough() -> bool:
        nonlocal found
        found = (await read_letters(settings))[0]
        return len(found) >= want

    await poll(enough, f"{want} dead letters", give_up_after=within)
    return sorted(found, key=lambda item: item.letter.failed_at)


async def _replay(settings: Settings, *, force: bool = False) -> str:
    out = io.StringIO()
    assert await replay_command(settings, LetterFilter(), dry_run=False, out=out, force=force) == 0
    return out.getvalue()


async def test_a_replay_that_fails_again_is_not_replayed_again_unless_forced(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    settings = make_settings()
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    async with CompletionPublisher(settings) as publisher:
        for raw in (b"not json at all", b'{"truncated": '):
            await publisher.publish_raw(GAME_DATE.isoformat().encode(), raw)
    originals = await _letters(settings, 2)
    assert [item.letter.replay_of for item in originals] == [None, None]

    assert "replayed 2 dead letter(s)" in await _replay(settings)
    letters = await _letters(settings, 4)
    assert len(letters) == 4
    again = [item for item in letters if item.letter.replay_of is not None]
    assert sorted(item.letter.replay_of or "" for item in again) == sorted(
        item.letter_id for item in originals
    ), "each failed replay names the letter it replayed"

    # The cause is not fixed: a second replay sends nothing and the topic does not grow.
    output = await _replay(settings)
    assert "2 failed again after a replay" in output
    assert "0 to replay" in output
    completions = await read_topic(settings, TopicName.PHASE_COMPLETIONS)
    assert len(completions) == 4, "the second replay sent records again"

    # --force sends each record once more (the newest letter of each lineage).
    output = await _replay(settings, force=True)
    assert "replayed 2 dead letter(s)" in output
    letters = await _letters(settings, 6)
    assert len(letters) == 6
    assert len(await read_topic(settings, TopicName.PHASE_COMPLETIONS)) == 6
    newest = [item for item in letters if item.letter.replay_of in {a.letter_id for a in again}]
    assert len(newest) == 2

    out = io.StringIO()
    await list_command(settings, LetterFilter(), out=out, full=True)
    listing = out.getvalue()
    chains = [line for line in listing.splitlines() if line.count(" > ") == 2]
    assert len(chains) == 2, listing  # first failure > failed replay > failed forced replay
    assert "2 replay(s) failed again" in listing
    assert "…" not in listing
