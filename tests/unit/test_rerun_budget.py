"""One rerun backoff and attempt budget for every rerun path, on the virtual clock."""

from __future__ import annotations

import itertools
from datetime import timedelta

from phaseflow.agents.readiness_state import RerunRecord
from phaseflow.agents.reruns import release_due, request_rerun
from phaseflow.models.codec import encode
from phaseflow.streams.core.registry import load_registry, parse_registry
from phaseflow.streams.simulation import make_completion
from phaseflow.streams.web.phase_status import phase_status
from tests.fixtures.readiness_harness import GAME_DATE, NOW, ORIGIN, Harness

THIN = {"expected_players": 450, "completed_players": 200, "total_predictions": 5}
GOOD = {"expected_players": 450, "completed_players": 440, "total_predictions": 11000}
MINUTE = timedelta(minutes=1)


async def reject(h: Harness) -> None:
    """The coordinator reports a thin batch (a fresh run each time)."""
    event = make_completion("prediction_coordinator", GAME_DATE, 5, at=h.clock.now(), metadata=THIN)
    assert await h.processor.handle(encode(event), ORIGIN) == []


async def test_gate_rejections_in_a_burst_send_one_rerun_not_a_storm() -> None:
    h = Harness()  # default registry: backoff 5m, max_attempts 3
    await h.fire_upstream_of(5)  # phase order: phase 5 is judged once phase 4 fired
    for _ in range(4):  # four rejected completions within 0.4 s
        await reject(h)
        h.clock.advance(timedelta(milliseconds=100))
    assert [(r.reason, r.attempt) for r in h.publisher.reruns()] == [("validation_failed", 1)]
    alerts = h.publisher.alerts()
    assert [a.kind for a in alerts] == ["validation_failed", "validation_failed"]
    assert "rerun requested" in alerts[0].message
    assert "rerun scheduled for 2026-03-11T09:05:00+00:00" in alerts[1].message
    assert await h.advance(5 * MINUTE - timedelta(milliseconds=401)) == []
    assert len(h.publisher.reruns()) == 1  # backoff not over yet
    await h.advance(timedelta(milliseconds=1))
    assert [r.attempt for r in h.publisher.reruns()] == [1, 2]
    assert len(h.publisher.alerts()) == 2  # sending the scheduled rerun is no new decision


async def test_gate_reruns_back_off_exponentially_then_the_circuit_opens_once() -> None:
    h = Harness()
    await h.fire_upstream_of(5)  # phase order: phase 5 is judged once phase 4 fired
    for _ in range(60):  # the coordinator answers every rerun at once, always thin
        await reject(h)
        await h.advance(MINUTE)
    sent_at = [r.requested_at for r in h.publisher.reruns()]
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent_at)]
    assert len(sent_at) == 3
    assert gaps[0] >= 5 * MINUTE
    assert gaps[1] >= 10 * MINUTE
    assert [a.kind for a in h.publisher.alerts()].count("circuit_open") == 1
    await h.advance(timedelta(hours=2))
    assert len(h.publisher.reruns()) == 3


async def test_a_passing_batch_after_rejections_still_fires_phase_six() -> None:
    h = Harness()
    await h.fire_upstream_of(5)  # phase order: phase 5 is judged once phase 4 fired
    await reject(h)
    await reject(h)
    event = make_completion("prediction_coordinator", GAME_DATE, 5, at=h.clock.now(), metadata=GOOD)
    [trigger] = await h.processor.handle(encode(event), ORIGIN)
    assert trigger.phase == 6


SHARED = """
[rerun]
max_attempts = 3
backoff = "20m"
[[phases]]
phase = 4
name = "precompute"
processors = ["a", "b"]
max_wait = "30m"
on_deadline = "trigger"
[[phases]]
phase = 5
name = "predictions"
processors = ["prediction_coordinator"]
[[systems]]
system_id = "moving_average_baseline_v1"
"""


async def test_a_deadline_rerun_waits_for_the_backoff_after_a_failure_rerun() -> None:
    h = Harness(parse_registry(SHARED, source="shared.toml"))
    await h.complete("a", 4, status="failed")
    await h.complete("b", 4)
    await h.advance(20 * MINUTE)
    assert [(r.reason, r.attempt) for r in h.publisher.reruns()] == [("failed", 1)]
    [trigger] = await h.advance(10 * MINUTE)  # max_wait: a is missing
    assert trigger.rule == "max_wait"
    assert len(h.publisher.reruns()) == 1  # 10 min after attempt 1, backoff is 20 min
    await h.advance(10 * MINUTE)
    assert [(r.reason, r.attempt) for r in h.publisher.reruns()] == [
        ("failed", 1),
        ("missing_at_deadline", 2),
    ]


def test_a_scheduled_rerun_stands_against_further_requests() -> None:
    policy = load_registry(None).rerun
    first = request_rerun(RerunRecord(), policy, "validation_failed", NOW)
    assert (first.action, first.attempt) == ("send", 1)
    second = request_rerun(first.record, policy, "cleanup", NOW + MINUTE)
    assert (second.action, second.due_at) == ("scheduled", NOW + 5 * MINUTE)
    third = request_rerun(second.record, policy, "validation_failed", NOW + 2 * MINUTE)
    assert (third.action, third.due_at, third.is_new) == ("pending", NOW + 5 * MINUTE, False)
    released = release_due(third.record, policy, NOW + 5 * MINUTE)
    assert (released.action, released.attempt) == ("send", 2)


def test_past_the_attempt_cap_the_circuit_opens_once() -> None:
    policy = load_registry(None).rerun
    record = RerunRecord(requested=policy.max_attempts, last_requested_at=NOW)
    opened = request_rerun(record, policy, "cleanup", NOW + timedelta(hours=1))
    assert opened.action == "circuit_opened"
    again = request_rerun(opened.record, policy, "failed", NOW + timedelta(hours=2))
    assert (again.action, again.is_new) == ("circuit_open", False)


async def test_status_shows_the_scheduled_rerun_and_the_attempts_made() -> None:
    h = Harness()
    await h.fire_upstream_of(5)  # phase order: phase 5 is judged once phase 4 fired
    await reject(h)
    await reject(h)
    phases = phase_status(h.registry, h.processor, GAME_DATE, h.processor.today())
    [phase5] = [p for p in phases if p["phase"] == 5]
    assert phase5["reruns"] == {
        "prediction_coordinator": {
            "requested": 1,
            "next_due_at": "2026-03-11T09:05:00+00:00",
            "next_reason": "validation_failed",
            "circuit_open": False,
        }
    }


SLOW_BACKOFF = """
[rerun]
max_attempts = 3
backoff = "30m"
[cleanup]
interval = "10m"
[[phases]]
phase = 2
name = "raw"
processors = ["r"]
[[phases]]
phase = 3
name = "analytics"
processors = ["a"]
[[phases]]
phase = 4
name = "precompute"
processors = ["x"]
"""


async def test_cleanup_reruns_keep_the_backoff_too() -> None:
    h = Harness(parse_registry(SLOW_BACKOFF, source="slow.toml"))
    await h.complete("r", 2)  # phase 3 starts; "a" never reports
    await h.advance(10 * MINUTE)
    assert [(r.processor_name, r.reason, r.attempt) for r in h.publisher.reruns()] == [
        ("a", "cleanup", 1)
    ]
    await h.advance(10 * MINUTE)  # the next scan, 10 min after attempt 1: backoff is 30 min
    await h.advance(10 * MINUTE)
    assert len(h.publisher.reruns()) == 1
    await h.advance(10 * MINUTE)  # 30 min after attempt 1
    assert [(r.reason, r.attempt) for r in h.publisher.reruns()] == [
        ("cleanup", 1),
        ("cleanup", 2),
    ]
