"""Source fallbacks (``any_of``): registry rules, firing, reruns, cleanup and status, on the
readiness harness's virtual clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from phaseflow.streams.core.registry import Registry, RegistryError, parse_registry
from phaseflow.streams.web.phase_status import phase_status
from phaseflow.streams.web.status_summary import PhaseSummary, phase_condition
from tests.fixtures.readiness_harness import GAME_DATE, NOW, Harness

PRIMARY = "p2_odds_game_lines"
FALLBACK = "p2_bettingpros_game_lines"
OTHER = "p2_nbacom_boxscores"
MINUTE = timedelta(minutes=1)


def registry(phase2_extra: str = "", rerun: str = "") -> Registry:
    return parse_registry(
        f"""
[rerun]
max_attempts = 1
backoff = "5m"
{rerun}

[[phases]]
phase = 2
name = "raw"
processors = ["{OTHER}"]
any_of = [["{PRIMARY}", "{FALLBACK}"]]
{phase2_extra}

[[phases]]
phase = 3
name = "analytics"
processors = ["player_game_summary"]
""",
        source="fallbacks.toml",
    )


def group_reruns(h: Harness) -> list[str]:
    """Rerun requests sent for the group's members, in order."""
    return [
        r.processor_name for r in h.publisher.reruns() if r.processor_name in (PRIMARY, FALLBACK)
    ]


# --- registry -------------------------------------------------------------------------------


def test_a_group_counts_once_named_after_its_primary() -> None:
    spec = registry().phase(2)
    assert spec.required == {OTHER, PRIMARY}
    assert spec.expected_processors(GAME_DATE, NOW.date()) == {OTHER, PRIMARY}
    assert spec.satisfied({FALLBACK}) == {FALLBACK, PRIMARY}
    assert spec.satisfied({OTHER}) == {OTHER}


def test_every_member_belongs_to_the_phase() -> None:
    reg = registry()
    assert reg.phase_for_processor(FALLBACK) == 2
    assert reg.phase_for_processor(PRIMARY) == 2


def _problems(text: str) -> str:
    with pytest.raises(RegistryError) as caught:
        parse_registry(text, source="p.toml")
    return str(caught.value)


_BASE = """
[[phases]]
phase = 2
name = "raw"
{body}

[[phases]]
phase = 3
name = "analytics"
processors = ["x"]
"""


def test_a_name_in_two_groups_is_an_error() -> None:
    body = 'processors = []\nany_of = [["a", "b"], ["c", "a"]]'
    assert _problems(_BASE.format(body=body)) == (
        "p.toml: phases[0].any_of[1][1]: 'a' is also in any_of[0]; a processor belongs to one "
        "fallback group only: remove it from all but one"
    )


def test_a_name_in_a_group_and_in_processors_is_an_error() -> None:
    body = 'processors = ["a", "c"]\nany_of = [["a", "b"]]'
    assert _problems(_BASE.format(body=body)) == (
        "p.toml: phases[0].any_of[0][0]: 'a' is also in phases[0].processors; a processor is "
        "either awaited on its own or a member of a fallback group: remove it from one"
    )


def test_a_group_of_one_is_an_error() -> None:
    body = 'processors = ["c"]\nany_of = [["a"]]'
    assert "phases[0].any_of[0]: a fallback group needs at least two processors" in _problems(
        _BASE.format(body=body)
    )


def test_a_group_member_of_another_phase_is_an_error() -> None:
    body = 'processors = ["c"]\nany_of = [["a", "x"]]'
    assert "phases[1].processors[0]: 'x' already belongs to phases[0] (phase 2)" in _problems(
        _BASE.format(body=body)
    )


def test_critical_names_a_group_by_its_primary_only() -> None:
    body = 'processors = ["c"]\nany_of = [["a", "b"]]\ncritical = ["b"]'
    assert "name the group by its primary 'a'" in _problems(_BASE.format(body=body))
    ok = parse_registry(_BASE.format(body='processors = ["c"]\nany_of = [["a", "b"]]\n'))
    assert ok.phase(2).required == {"a", "c"}


def test_a_phase_of_groups_only_is_valid() -> None:
    reg = parse_registry(_BASE.format(body='processors = []\nany_of = [["a", "b"]]'))
    assert reg.phase(2).required == {"a"}


def test_tiers_count_a_group_once() -> None:
    body = 'processors = ["c"]\nany_of = [["a", "b"]]\ntiers = [{ after = "1h", min_complete = 3 }]'
    assert "min_complete: 3 is more than the 2 processors" in _problems(_BASE.format(body=body))


# --- firing ---------------------------------------------------------------------------------


async def test_only_the_fallback_succeeding_fires_ready() -> None:
    h = Harness(registry())
    await h.complete(OTHER, 2)
    assert h.publisher.triggers() == []
    await h.complete(FALLBACK, 2)
    [trigger] = h.publisher.triggers()
    assert (trigger.phase, trigger.reason, trigger.rule) == (3, "ready", "all_complete")
    # The trigger names the source that was used, not the group's primary.
    assert (trigger.completed, trigger.missing) == ([FALLBACK, OTHER], [])
    await h.complete(PRIMARY, 2)  # the primary arriving late fires nothing more
    assert len(h.publisher.triggers()) == 1


async def test_primary_failing_then_fallback_succeeding_fires_once_and_cancels_the_rerun() -> None:
    h = Harness(registry())
    await h.complete(OTHER, 2)
    await h.complete(PRIMARY, 2, status="failed")
    state = h.processor.state(GAME_DATE, 2)
    assert state is not None
    assert state.reruns[PRIMARY].next_due_at is not None
    await h.complete(FALLBACK, 2)
    assert len(h.publisher.triggers()) == 1
    await h.advance(timedelta(hours=1))
    assert group_reruns(h) == []  # (phase 3's cleanup reruns are not this test's business)
    assert len(h.publisher.triggers()) == 1


async def test_reruns_go_to_the_primary_first_then_the_fallback() -> None:
    h = Harness(registry())
    await h.complete(OTHER, 2)
    await h.complete(PRIMARY, 2, status="failed")
    await h.advance(5 * MINUTE)
    assert [r.processor_name for r in h.publisher.reruns()] == [PRIMARY]
    # The primary's one attempt fails too: its circuit opens and the fallback gets its turn.
    await h.complete(PRIMARY, 2, status="failed")
    assert [a.kind for a in h.publisher.alerts()] == ["circuit_open"]
    await h.advance(5 * MINUTE)
    assert [r.processor_name for r in h.publisher.reruns()] == [PRIMARY, FALLBACK]
    await h.complete(FALLBACK, 2)
    [trigger] = h.publisher.triggers()
    assert trigger.completed == [FALLBACK, OTHER]


async def test_a_failed_fallback_after_the_group_is_done_asks_for_nothing() -> None:
    h = Harness(registry())
    await h.complete(PRIMARY, 2)
    await h.complete(FALLBACK, 2, status="failed")
    await h.advance(timedelta(hours=1))
    assert group_reruns(h) == []


async def test_a_deadline_reruns_the_missing_group_as_its_primary() -> None:
    h = Harness(registry('max_wait = "1h"'))
    await h.complete(OTHER, 2)
    await h.advance(timedelta(hours=1))
    [trigger] = h.publisher.triggers()
    assert (trigger.reason, trigger.missing) == ("timeout", [PRIMARY])
    assert [r.processor_name for r in h.publisher.reruns()] == [PRIMARY]


async def test_a_tier_counts_the_group_once() -> None:
    h = Harness(registry('tiers = [{ after = "30m", min_complete = 2 }]\nmax_wait = "2h"'))
    await h.complete(OTHER, 2)
    await h.advance(30 * MINUTE)
    assert h.publisher.triggers() == []  # one of the two expected is done, not two
    await h.complete(FALLBACK, 2)
    [trigger] = h.publisher.triggers()
    assert trigger.reason == "ready"


async def test_cleanup_reruns_the_primary_not_every_member() -> None:
    h = Harness(registry())
    await h.complete(OTHER, 2)
    await h.advance(16 * MINUTE)  # past the cleanup interval (15m)
    assert [(r.processor_name, r.reason) for r in h.publisher.reruns()] == [(PRIMARY, "cleanup")]


# --- status ---------------------------------------------------------------------------------


async def test_status_says_which_member_satisfied_the_group() -> None:
    h = Harness(registry())
    await h.complete(OTHER, 2)
    await h.complete(FALLBACK, 2)
    [phase2, _] = phase_status(h.registry, h.processor, GAME_DATE, NOW.date())
    assert phase2["satisfied_by"] == {PRIMARY: FALLBACK}
    assert phase2["missing"] == []
    summary = PhaseSummary.model_validate(phase2)
    assert summary.done_count == 2
    headline = phase_condition(summary, NOW).headline
    assert headline == (f"triggered phase 3 (ready); {PRIMARY} satisfied by {FALLBACK}")


async def test_status_of_a_group_met_by_its_primary_says_nothing_extra() -> None:
    h = Harness(registry())
    await h.complete(PRIMARY, 2)
    [phase2, _] = phase_status(h.registry, h.processor, GAME_DATE, NOW.date())
    assert phase2["satisfied_by"] == {}
    assert phase2["missing"] == [OTHER]


async def test_a_stall_alert_names_the_group_with_its_fallback() -> None:
    h = Harness(registry('stall_after = "2h"'))
    await h.complete(OTHER, 2)
    await h.advance(timedelta(hours=2))
    [stall] = [a for a in h.publisher.alerts() if a.kind == "phase_stalled"]
    assert f"missing {PRIMARY} (or {FALLBACK})" in stall.message
    assert stall.details["missing"] == [PRIMARY]
