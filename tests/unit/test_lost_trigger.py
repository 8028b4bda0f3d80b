"""A phase whose completions are all recorded but whose trigger was lost (a crash between the
state write and the send, a commit that split them) fires at the next tick: a replayed
completion is dropped as a duplicate, so nothing else would send it before the stall alert."""

from __future__ import annotations

from datetime import timedelta

from tests.fixtures.readiness_harness import GAME_DATE, PHASE3, Harness


async def test_a_ready_phase_without_its_trigger_fires_at_the_next_tick() -> None:
    h = Harness()
    await h.fire_upstream_of(3)
    fired: list = []
    for name in PHASE3:
        fired += await h.complete(name, 3)
    assert [(t.phase, t.reason) for t in fired] == [(4, "ready")]

    complete = h.processor.state(GAME_DATE, 3)
    assert complete is not None
    h.processor._store.save(complete.model_copy(update={"trigger": None}))  # the lost trigger

    again = await h.advance(timedelta(seconds=1))
    assert [(t.game_date, t.phase, t.reason) for t in again] == [(GAME_DATE, 4, "ready")]
    state = h.processor.state(GAME_DATE, 3)
    assert state is not None
    assert state.trigger is not None
    assert await h.advance(timedelta(minutes=5)) == []  # once


async def test_a_phase_still_waiting_asks_for_no_evaluation() -> None:
    h = Harness()
    await h.fire_upstream_of(3)
    for name in PHASE3[:-1]:
        await h.complete(name, 3)
    assert [tick.kind for tick in h.processor.due_ticks() if tick.kind == "evaluate"] == []
