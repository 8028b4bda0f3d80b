"""``python -m bench.alert_path``: one ``phase_timeout`` alert travelling from a missing
processor to a Slack-format message and a PagerDuty trigger, and its PagerDuty resolve once the
processor reports, on a real broker, with timings.

Starts Apache Kafka from its jars (``--broker tansu`` for the embedded broker; a running broker
with ``PHASEFLOW_BROKER_URL``), an HTTP server on 127.0.0.1 standing in for Slack and PagerDuty
(tests/fixtures/receivers.py, which folds repeated PagerDuty triggers by ``dedup_key`` as
PagerDuty does) and a ``phaseflow worker`` whose registry gives phase 2 a short ``max_wait`` and
``on_deadline = "alert"``. It publishes phase 2 of a day with one processor missing, waits for
the alert, shows what Slack and PagerDuty received, publishes the missing processor and shows
the resolve. Each run uses topics and groups of its own, so it can be repeated on one broker.

Timings (seconds, this machine's clock):

* deadline -> alert on topic: from the first completion plus ``max_wait`` to the alert record's
  timestamp (the readiness tick decides; ``PHASEFLOW_READINESS_TICK_SECONDS`` is 0.2 here);
* alert on topic -> Slack / PagerDuty trigger: the notifier routes' delivery;
* completion -> trigger on topic -> PagerDuty resolve: the missing processor's completion
  published, phase 3's trigger record, the resolve received.

The integration test tests/integration/test_notifiers.py runs the same path and checks it.
Exit status 0 when the whole path was seen, 1 (and the worker's log tail) when not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Final, TypeVar

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from bench.services import BenchBroker, started_broker, tansu_settings, worker_settings
from phaseflow.models.codec import encode
from phaseflow.models.events import Alert, PhaseTrigger
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import TopicName, ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.simulation import TopicReader, TriggerReader, make_completion
from phaseflow.streams.text_table import aligned_rows
from tests.fixtures.polling import poll
from tests.fixtures.receivers import HttpReceiver, Received, wait_until_joined

EventT = TypeVar("EventT", bound=BaseModel)
GAME_DATE: Final = date(2026, 12, 6)
PRESENT: Final = ("p2_nbacom_boxscores", "p2_nbacom_gamebook_pdf")
MISSING: Final = "p2_odds_game_lines"
DEADLINE_SECONDS: Final = 10
ALERT_KEY: Final = f"phase_timeout:{GAME_DATE.isoformat()}:phase_2"
#: Longest wait for any one step (a worker start on a loaded machine is the slowest).
GIVE_UP_SECONDS: Final = 180.0
REGISTRY: Final = """\
retention_days = 30
[[phases]]
phase = 2
name = "raw"
processors = [{processors}]
max_wait = "{deadline}s"
on_deadline = "alert"                  # past the deadline: alert, phase 3 waits for the last one
[[phases]]
phase = 3
name = "analytics"
processors = ["player_game_summary"]
"""


class BrokerUnreachableError(ConnectionError):
    """No bootstrap server answered; the message says which and why."""


@dataclass(frozen=True)
class Readiness:
    """What the worker answered on ``GET /ready`` and ``phaseflow_worker_ready`` right after."""

    status: int
    reasons: list[str]
    metric: float | None
    #: phaseflow_worker_not_ready_cause per cause.
    causes: dict[str, float]


@dataclass(frozen=True)
class AlertPath:
    """What one run saw; every time is on this process's ``time.monotonic()`` clock."""

    alert: Alert
    trigger: PhaseTrigger
    deadline: float
    alert_on_topic: float
    slack: Received
    pagerduty_trigger: Received
    completed: float
    trigger_on_topic: float
    pagerduty_resolve: Received
    readiness: Readiness

    def timings(self) -> list[tuple[str, float]]:
        return [
            ("deadline -> alert on topic", self.alert_on_topic - self.deadline),
            ("alert on topic -> Slack message", self.slack.at - self.alert_on_topic),
            (
                "alert on topic -> PagerDuty trigger",
                self.pagerduty_trigger.at - self.alert_on_topic,
            ),
            ("deadline -> PagerDuty trigger", self.pagerduty_trigger.at - self.deadline),
            ("completion -> trigger on topic", self.trigger_on_topic - self.completed),
            (
                "trigger on topic -> PagerDuty resolve",
                self.pagerduty_resolve.at - self.trigger_on_topic,
            ),
            ("completion -> PagerDuty resolve", self.pagerduty_resolve.at - self.completed),
        ]


def monotonic_of(moment: datetime) -> float:
    """A wall-clock moment (a record timestamp) on the ``time.monotonic()`` clock."""
    return moment.timestamp() - (time.time() - time.monotonic())


async def run_alert_path(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    workdir: Path,
    *,
    give_up_after: float = GIVE_UP_SECONDS,
) -> AlertPath:
    """The whole path once; ``make_settings(**overrides)`` gives the worker's settings on the
    broker (topics of its own), ``start_worker`` starts it (the caller stops it)."""
    registry = workdir / "alert-path.toml"
    names = ", ".join(f'"{name}"' for name in (*PRESENT, MISSING))
    registry.write_text(REGISTRY.format(processors=names, deadline=DEADLINE_SECONDS))
    async with HttpReceiver() as slack, HttpReceiver(dedup=True) as pagerduty:
        settings = make_settings(
            registry_path=registry,
            readiness_tick_seconds=0.2,
            notify_slack_url=slack.url("/services/T000/B000/demo"),
            notify_pagerduty_routing_key="demo-routing-key",
            notify_pagerduty_url=pagerduty.url("/v2/enqueue"),
            notify_retry_backoff_seconds=0.2,
        )
        problem = await kafka_clients.connection_problem(settings)
        if problem is not None:
            raise BrokerUnreachableError(problem)
        await ensure_topics(settings)
        worker = start_worker(settings)
        await asyncio.to_thread(worker.wait_ready, give_up_after)
        producer = kafka_clients.producer(settings)
        await producer.start()
        try:

            async def send(alert: Alert) -> None:
                topic = settings.topic(TopicName.ALERTS)
                await producer.send_and_wait(topic, encode(alert), key=alert.key.encode())

            await wait_until_joined(send, slack, pagerduty, give_up_after=give_up_after)
        finally:
            await producer.stop()
        readiness = await readiness_of(settings)
        async with (
            CompletionPublisher(settings) as publisher,
            TopicReader(settings, TopicName.ALERTS, Alert) as alerts,
            TriggerReader(settings) as triggers,
        ):
            first, *others = PRESENT
            await publisher.publish(make_completion(first, GAME_DATE, 2))
            # The phase's deadline counts from its first completion (as the broker took it).
            deadline = time.monotonic() + DEADLINE_SECONDS
            for name in others:
                await publisher.publish(make_completion(name, GAME_DATE, 2))
            alert_at, alert = await _first(alerts, lambda a: a.key == ALERT_KEY, give_up_after)
            slack_message = await _received(slack, "trigger", give_up_after)
            pagerduty_trigger = await _received(pagerduty, "trigger", give_up_after)
            await publisher.publish(make_completion(MISSING, GAME_DATE, 2))
            completed = time.monotonic()
            trigger_at, trigger = await _first(triggers, lambda t: t.phase == 3, give_up_after)
            pagerduty_resolve = await _received(pagerduty, "resolve", give_up_after)
    return AlertPath(
        alert=alert,
        trigger=trigger,
        deadline=deadline,
        alert_on_topic=monotonic_of(alert_at),
        slack=slack_message,
        pagerduty_trigger=pagerduty_trigger,
        completed=completed,
        trigger_on_topic=monotonic_of(trigger_at),
        pagerduty_resolve=pagerduty_resolve,
        readiness=readiness,
    )


async def _first(
    reader: TopicReader[EventT], wanted: Callable[[EventT], bool], give_up_after: float
) -> tuple[datetime, EventT]:
    """The first record ``wanted`` picks and its timestamp."""
    give_up_at = time.monotonic() + give_up_after
    while time.monotonic() < give_up_at:
        for stamp, event in await reader.read_stamped(0.25):
            if wanted(event):
                return stamp, event
    raise TimeoutError(f"nothing wanted on the topic within {give_up_after:g} s")


async def _received(receiver: HttpReceiver, action: str, give_up_after: float) -> Received:
    """The first request about the alert with this ``action`` (PagerDuty's ``event_action``;
    a Slack message's title says RESOLVED for a resolve)."""

    def matching() -> list[Received]:
        return [entry for entry in receiver.received if _about_alert(entry, action)]

    async def arrived() -> bool:
        return bool(matching())

    await poll(arrived, f"the {action} of {ALERT_KEY}", give_up_after=give_up_after)
    return matching()[0]


def _about_alert(entry: Received, action: str) -> bool:
    body = entry.body
    if "dedup_key" in body:
        return bool(body["dedup_key"] == ALERT_KEY and body["event_action"] == action)
    text = json.dumps(body)
    return ALERT_KEY in text and (action == "resolve") == ("RESOLVED" in text)


async def readiness_of(settings: Settings) -> Readiness:
    """``GET /ready``, then the ready series on ``/metrics`` (checked again at that scrape)."""
    async with aiohttp.ClientSession(f"http://127.0.0.1:{settings.web_port}") as http:
        async with http.get("/ready") as response:
            status, body = response.status, await response.json()
        async with http.get("/metrics") as response:
            text = await response.text()
    metric: float | None = None
    causes: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "phaseflow_worker_ready":
                metric = sample.value
            elif sample.name == "phaseflow_worker_not_ready_cause":
                causes[sample.labels["cause"]] = sample.value
    return Readiness(status=status, reasons=list(body["reasons"]), metric=metric, causes=causes)


def report(path: AlertPath) -> str:
    """What the closing note shows: the messages as received, then the timings."""
    lines = [
        (
            f"alert on the topic: {path.alert.kind} {path.alert.subject} ({path.alert.severity}): "
            f"{path.alert.message}"
        ),
        f"Slack message received at {path.slack.path}:",
        json.dumps(path.slack.body, indent=2),
        f"PagerDuty trigger received at {path.pagerduty_trigger.path}:",
        json.dumps(path.pagerduty_trigger.body, indent=2),
        (
            f"{MISSING} reported; phase 3 trigger: reason {path.trigger.reason}, rule "
            f"{path.trigger.rule}"
        ),
        "PagerDuty resolve received:",
        json.dumps(path.pagerduty_resolve.body, indent=2),
        (
            f"GET /ready {path.readiness.status} {path.readiness.reasons}; "
            f"phaseflow_worker_ready {path.readiness.metric}"
        ),
        "",
        *aligned_rows([(step, f"{seconds:.2f} s") for step, seconds in path.timings()]),
        json.dumps({step: round(seconds, 3) for step, seconds in path.timings()}),
    ]
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.alert_path", description=__doc__)
    parser.add_argument(
        "--broker",
        choices=("kafka", "tansu"),
        default="kafka",
        help="broker to start when PHASEFLOW_BROKER_URL names none (default: Apache Kafka)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    with started_broker(args.broker) as (url, kind), tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        broker = BenchBroker(url, kind, tansu_settings() if kind == "tansu" else {})
        make = partial(worker_settings, broker, workdir, stem="alert-path", log_level="INFO")
        started: list[WorkerProcess] = []

        def start_worker(settings: Settings) -> WorkerProcess:
            worker = WorkerProcess(settings, workdir / "worker.log")
            worker.start()
            started.append(worker)
            return worker

        print(f"broker: {kind} at {url}; phase 2 max_wait {DEADLINE_SECONDS} s", flush=True)
        try:
            path = asyncio.run(run_alert_path(make, start_worker, workdir))
        except BrokerUnreachableError as error:
            print(f"error: broker unreachable: {error}", file=sys.stderr)
            return 1
        except (TimeoutError, AssertionError) as error:
            print(f"error: {error}", file=sys.stderr)
            for worker in started:
                print(worker.tail(60), file=sys.stderr)
            return 1
        finally:
            for worker in started:
                worker.stop(timeout=20)
    print(report(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
