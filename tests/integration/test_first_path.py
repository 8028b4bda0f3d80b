"""The first end-to-end path on a real broker: completions in, exactly one trigger out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date

from phaseflow.models.codec import encode
from phaseflow.models.events import PhaseTrigger
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.simulation import TriggerReader, make_completion

GAME_DATE = date(2026, 1, 15)
PHASE2_REQUIRED = ["p2_odds_game_lines", "p2_nbacom_gamebook_pdf", "p2_nbacom_boxscores"]


async def read_triggers(settings: Settings, *, want: int, quiet_for: float) -> list[PhaseTrigger]:
    """Everything on the trigger topic until ``want`` arrived and then ``quiet_for`` s passed."""
    async with TriggerReader(settings) as reader:
        return await reader.read_until(
            lambda found: len(found) >= want, give_up_after=120, quiet_for=quiet_for
        )


async def test_completions_with_a_duplicate_fire_exactly_one_trigger(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    settings = make_settings()
    await ensure_topics(settings)
    worker = start_worker(settings)
    events = [make_completion(name, GAME_DATE, 2) for name in PHASE2_REQUIRED]
    async with CompletionPublisher(settings) as publisher:
        await publisher.publish(events[0])
        await publisher.publish(events[0])  # a retried publish: same execution_id
        await publisher.publish(make_completion(PHASE2_REQUIRED[0], GAME_DATE, 2))  # a rerun
        await publisher.publish_raw(b"2026-01-15", b"{broken")  # bad input in between
        for event in events[1:]:
            await publisher.publish(event)
        await publisher.publish(events[2])
    await asyncio.to_thread(worker.wait_ready, 120.0)
    triggers = await read_triggers(settings, want=1, quiet_for=3.0)
    assert [(t.game_date, t.phase, t.reason, t.rule) for t in triggers] == [
        (GAME_DATE, 3, "ready", "all_complete")
    ]
    assert sorted(triggers[0].completed) == sorted(PHASE2_REQUIRED)


async def test_a_whole_simulated_day_fires_each_phase_once_in_order(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    from phaseflow.streams.core.registry import load_registry
    from phaseflow.streams.simulation import simulate_day

    settings = make_settings()
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    result = await simulate_day(
        settings, load_registry(None), GAME_DATE, today=date(2026, 1, 16), give_up_after=120
    )
    assert result.finished, worker.tail()
    assert [t.phase for t in result.triggers] == [3, 4, 5, 6]
    phases_in_arrival_order = sorted(result.trigger_seconds, key=result.trigger_seconds.__getitem__)
    assert phases_in_arrival_order == [3, 4, 5, 6]
    # nothing more arrives once the day is done
    later = await read_triggers(settings, want=4, quiet_for=2.0)
    assert sorted(t.phase for t in later) == [3, 4, 5, 6]
    assert encode(later[0])  # readable by the codec as published
