"""``phaseflow rerun`` over every gated phase follows the triggers phase by phase."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

from phaseflow.models.events import PhaseTrigger
from phaseflow.streams.backfill import follow_phases
from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.rerun import rerun_command

DATES = [date(2026, 3, 1), date(2026, 3, 2)]
AT = datetime(2026, 3, 20, 14, 0, tzinfo=UTC)


def trigger(day: date, phase: int) -> PhaseTrigger:
    return PhaseTrigger(
        game_date=day,
        phase=phase,
        reason="rerun",
        rule="rerun",
        trigger_id=PhaseTrigger.make_id(day, phase, "rerun", "round-1"),
        triggered_at=AT,
    )


class FakeTopic:
    """Hands out the scripted triggers one batch per read, and a virtual monotonic clock."""

    def __init__(self, batches: list[list[PhaseTrigger]]) -> None:
        self.batches = batches
        self.seconds = 0.0
        self.reads = 0

    async def read(self, wait_seconds: float) -> list[PhaseTrigger]:
        self.reads += 1
        self.seconds += wait_seconds
        return self.batches.pop(0) if self.batches else []

    def monotonic(self) -> float:
        return self.seconds


async def test_each_phase_is_awaited_on_every_date_in_order() -> None:
    topic = FakeTopic(
        [
            [trigger(DATES[0], 3)],
            [trigger(DATES[1], 3), trigger(DATES[0], 4)],
            [trigger(DATES[1], 4)],
            [trigger(d, p) for p in (5, 6) for d in DATES],
        ]
    )
    out = io.StringIO()
    code = await follow_phases(
        load_registry(None),
        first=2,
        dates=DATES,
        read=topic.read,
        phase_timeout=timedelta(minutes=60),
        out=out,
        monotonic=topic.monotonic,
    )
    assert code == 0
    assert out.getvalue().splitlines() == [
        "phase 3 started for 2 date(s)",
        "phase 4 started for 2 date(s)",
        "phase 5 started for 2 date(s)",
        "phase 6 started for 2 date(s)",
        "every phase after phase 2 started again for 2 date(s)",
    ]


async def test_a_phase_that_does_not_start_ends_the_command_with_exit_1_naming_the_dates() -> None:
    topic = FakeTopic([[trigger(d, 3) for d in DATES], [trigger(DATES[0], 4)]])
    out, err = io.StringIO(), io.StringIO()
    code = await follow_phases(
        load_registry(None),
        first=2,
        dates=DATES,
        read=topic.read,
        phase_timeout=timedelta(minutes=1),
        out=out,
        err=err,
        monotonic=topic.monotonic,
    )
    assert code == 1
    assert out.getvalue().splitlines()[-1] == "phase 3 started for 2 date(s)"
    assert err.getvalue().splitlines() == [
        (
            "phaseflow: error: phase 4 did not start within 1 min for 2026-03-02; later phases "
            "were not followed (phaseflow status --date 2026-03-02 shows what it waits for)"
        )
    ]


async def test_a_phase_timeout_of_zero_is_refused_before_anything_is_sent() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = await rerun_command(
        Settings(),
        start=DATES[0],
        end=DATES[1],
        phase=None,
        processor=None,
        attempt=1,
        dry_run=False,
        out=out,
        err=err,
        phase_timeout=timedelta(0),
    )
    assert (code, out.getvalue()) == (2, "")
    assert err.getvalue() == (
        "phaseflow: error: --phase-timeout must be more than 0 minutes (or use --no-follow)\n"
    )
