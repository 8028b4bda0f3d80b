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
from typing import Any

from phaseflow.models.codec import encode
from phaseflow.models.events import Alert, PhaseTrigger
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName
from phaseflow.streams.local.worker_process import WorkerProcess
from tests.fixtures.polling import poll
from tests.fixtures.receivers import HttpReceiver

GIVE_UP = 120.0


def alert(subject: str, kind: str = "phase_timeout") -> Alert:
    return Alert.model_validate(
        {
            "kind": kind,
            "severity": "critical",
            "subject": subject,
            "message": f"{kind} of {subject}",
            "raised_at": datetime.now(UTC),
        }
    )


def pagerduty_events(receiver: HttpReceiver) -> list[tuple[str, str]]:
    return [(entry.body["event_action"], entry.body["dedup_key"]) for entry in receiver.received]


def slack_keys(receiver: HttpReceiver) -> list[str]:
    # The context block carries the key: "`{key}` at {time}".
    return [
        entry.body["blocks"][1]["elements"][0]["text"].split("`")[1] for entry in receiver.received
    ]


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

            await _wait_until_joined(send, slack, pagerduty)

            # A timeout alert, then the next phase's trigger: trigger and resolve.
            timeout = alert("2026-12-06:phase_2")
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
            others = [alert(f"group-{index}", "consumer_lag") for index in range(3)]
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
        finally:
            await producer.stop()


Send = Callable[..., Awaitable[None]]


async def _wait_until_joined(send: Send, slack: HttpReceiver, pagerduty: HttpReceiver) -> None:
    """A new route starts at the end of the topic: canaries until both routes deliver."""
    canaries = iter(range(1000))

    async def both_joined() -> bool:
        await send(alert(f"canary-{next(canaries)}", "sla_breach"))
        return bool(slack.received) and bool(pagerduty.received)

    await poll(both_joined, "both notifier routes to join", give_up_after=GIVE_UP)
    await asyncio.sleep(2)  # canaries still in flight land before the counts are taken
    slack.received.clear()
    pagerduty.received.clear()


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
    burst = [alert(f"burst-{index}", "sla_breach") for index in range(6)]
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


async def _at_least(receiver: HttpReceiver, count: int) -> bool:
    return len(receiver.received) >= count
