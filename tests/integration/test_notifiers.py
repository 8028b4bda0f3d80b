"""Alerts on a real broker reach real receivers (an HTTP server in this test process standing
in for Slack and PagerDuty) through a ``phaseflow worker``: each once per receiver, resolves
included; a worker killed mid-delivery loses none and, to a receiver that honours the
``dedup_key`` (PagerDuty), delivers none twice."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bench.alert_path import ALERT_KEY, MISSING, readiness_of, report, run_alert_path
from phaseflow.models.codec import encode
from phaseflow.models.events import PhaseTrigger
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.local.worker_process import WorkerProcess
from tests.fixtures.polling import poll
from tests.fixtures.receivers import (
    HttpReceiver,
    an_alert,
    pagerduty_events,
    slack_keys,
    wait_until_joined,
)

GIVE_UP = 120.0


async def test_alerts_reach_each_receiver_once_and_survive_a_kill(
    make_settings: Callable[..., Settings],
    start_worker: Callable[..., WorkerProcess],
) -> None:
    async with HttpReceiver() as slack, HttpReceiver(dedup=True) as pagerduty:
        settings = make_settings(
            notify_slack_url=slack.url("/slack"),
            notify_pagerduty_routing_key="routing-key",
            notify_pagerduty_url=pagerduty.url("/v2/enqueue"),
            notify_retry_backoff_seconds=0.2,
            notify_max_per_hour=10_000,  # the canaries must not use up the hour's messages
        )
        worker = start_worker(settings)
        await asyncio.to_thread(worker.wait_ready)
        producer = kafka_clients.producer(settings)
        await producer.start()
        try:

            async def send(event: Any, topic: TopicName = TopicName.ALERTS) -> None:
                await producer.send_and_wait(
                    settings.topic(topic), encode(event), key=event.key.encode()
                )

            await wait_until_joined(send, slack, pagerduty, give_up_after=GIVE_UP)

            # A timeout alert, then the next phase's trigger: trigger and resolve.
            timeout = an_alert("2026-12-06:phase_2")
            sent_at = time.monotonic()
            await send(timeout)

            async def timeout_paged() -> bool:
                return bool(pagerduty.received) and bool(slack.received)

            # The trigger is on another topic: sent at once it could be read before the alert.
            await poll(timeout_paged, "the timeout alert at both", give_up_after=GIVE_UP)
            triggered_at = time.monotonic()
            await send(
                PhaseTrigger(
                    game_date=date(2026, 12, 6),
                    phase=3,
                    reason="ready",
                    rule="all",
                    trigger_id="t-1",
                    triggered_at=datetime.now(UTC),
                ),
                TopicName.PHASE_TRIGGERS,
            )
            others = [an_alert(f"group-{index}", "consumer_lag") for index in range(3)]
            for raised in others:
                await send(raised)
            await send(others[0])  # a repeat within repeat_after: not sent again

            async def all_delivered() -> bool:
                return len(pagerduty.received) >= 5 and len(slack.received) >= 5

            await poll(all_delivered, "the alerts at both receivers", give_up_after=GIVE_UP)
            await asyncio.sleep(2)  # anything sent twice would land now
            resolve = next(e for e in pagerduty.received if e.body["event_action"] == "resolve")
            print(
                f"timeout alert -> Slack {slack.received[0].at - sent_at:.2f} s, -> PagerDuty "
                f"trigger {pagerduty.received[0].at - sent_at:.2f} s; trigger -> PagerDuty "
                f"resolve {resolve.at - triggered_at:.2f} s"
            )
            # Partitions are delivered in no fixed order: compare as multisets.
            assert Counter(pagerduty_events(pagerduty)) == Counter(
                [("trigger", timeout.key), ("resolve", timeout.key)]
                + [("trigger", raised.key) for raised in others]
            )
            assert Counter(slack_keys(slack)) == Counter(
                [timeout.key, timeout.key] + [raised.key for raised in others]
            )

            await _kill_mid_delivery(send, slack, pagerduty, worker, lambda: start_worker(settings))
            await _a_wrong_url_makes_the_worker_not_ready(send, slack, settings)
        finally:
            await producer.stop()


Send = Callable[..., Awaitable[None]]


async def _kill_mid_delivery(
    send: Send,
    slack: HttpReceiver,
    pagerduty: HttpReceiver,
    worker: WorkerProcess,
    start_again: Callable[[], WorkerProcess],
) -> None:
    """kill -9 while the receivers are slow (deliveries under way), start a new worker: none
    lost; none twice at PagerDuty; only what was in flight is sent again."""
    slack.delay = pagerduty.delay = 0.5
    burst = [an_alert(f"burst-{index}", "sla_breach") for index in range(6)]
    for raised in burst:
        await send(raised)
    await poll(lambda: _at_least(pagerduty, 7), "a burst alert delivered", give_up_after=GIVE_UP)
    before_kill = len(pagerduty.received)
    worker.kill()
    slack.delay = pagerduty.delay = 0.0
    restarted = start_again()
    await asyncio.to_thread(restarted.wait_ready)
    wanted = {raised.key for raised in burst}

    async def burst_everywhere() -> bool:
        return wanted <= set(slack_keys(slack)) and wanted <= {
            key for _, key in pagerduty_events(pagerduty)
        }

    try:
        await poll(burst_everywhere, "every burst alert after the kill", give_up_after=GIVE_UP)
    except AssertionError:
        print(restarted.tail(80))
        raise
    await asyncio.sleep(2)
    # None lost (above); none twice where the dedup key is honoured.
    counts = Counter(pagerduty_events(pagerduty))
    assert all(count == 1 for count in counts.values()), counts
    # Only what was in flight at the kill came again: everything before was committed.
    again = {entry.body["dedup_key"] for entry in pagerduty.duplicates}
    assert again <= wanted, again
    print(  # the closing note's numbers (pytest -s)
        f"kill -9 after {before_kill - 5} of {len(burst)} burst alerts reached PagerDuty; "
        f"{len(pagerduty.duplicates)} sent again (folded by dedup_key), "
        f"{len(slack.received) - 5 - len(burst)} sent twice to Slack"
    )


async def _a_wrong_url_makes_the_worker_not_ready(
    send: Send, slack: HttpReceiver, settings: Settings
) -> None:
    """A 404 from Slack (a wrong webhook URL): /ready answers 503 naming the route, and
    phaseflow_worker_ready on /metrics goes from 1 to 0 with the cause ``notifier``."""

    async def ready() -> bool:
        return (await readiness_of(settings)).status == 200

    await poll(ready, "/ready to answer 200", give_up_after=GIVE_UP)
    before = await readiness_of(settings)
    assert (before.status, before.metric) == (200, 1.0), before
    assert not any(before.causes.values()), before
    # A wrong URL answers 404 to every request, not only to the next one: an alert still being
    # re-delivered after the kill above may reach Slack first, and a success after the 404 would
    # rightly clear the problem again.
    slack.fail(*[404] * 100)
    await send(an_alert("wrong-url", "sla_breach"))

    async def not_ready() -> bool:
        return (await readiness_of(settings)).status == 503

    await poll(not_ready, "/ready to answer 503 after the 404", give_up_after=GIVE_UP)
    after = await readiness_of(settings)
    assert (after.status, after.metric) == (503, 0.0), after
    assert any("slack" in reason and "404" in reason for reason in after.reasons), after
    assert after.causes["notifier"] == 1.0, after


async def test_a_missing_processor_pages_and_its_report_resolves(
    make_settings: Callable[..., Settings],
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    """The closing note's path (``python -m bench.alert_path`` runs the same): a phase past its
    deadline with one processor missing, a phase_timeout alert as a Slack message and a
    PagerDuty trigger; the processor reports, phase 3 starts, PagerDuty gets the resolve."""
    path = await run_alert_path(make_settings, start_worker, tmp_path, give_up_after=GIVE_UP)
    print(report(path))  # the closing note's messages and timings (pytest -s)
    assert path.alert.kind == "phase_timeout"
    assert path.alert.key == ALERT_KEY
    assert path.alert.details["missing"] == [MISSING]
    assert ALERT_KEY in path.slack.body["blocks"][1]["elements"][0]["text"]
    assert path.slack.body["text"].startswith(":warning: *WARNING phase_timeout")
    trigger = path.pagerduty_trigger.body
    assert (trigger["event_action"], trigger["dedup_key"]) == ("trigger", ALERT_KEY)
    assert trigger["routing_key"] == "demo-routing-key"
    assert trigger["payload"]["custom_details"]["missing"] == [MISSING]
    assert (path.trigger.phase, path.trigger.reason) == (3, "ready")
    resolve = path.pagerduty_resolve.body
    assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", ALERT_KEY)
    assert path.completed < path.pagerduty_resolve.at
    assert path.pagerduty_trigger.at < path.pagerduty_resolve.at
    assert (path.readiness.status, path.readiness.metric) == (200, 1.0), path.readiness


async def _at_least(receiver: HttpReceiver, count: int) -> bool:
    return len(receiver.received) >= count
