"""A Kafka client whose start fails (broker unreachable) is closed, not dropped half-built.

While the broker was down, the worker's dead-letter tracker and alerts feed (each polled every
``PHASEFLOW_LAG_SAMPLE_INTERVAL_SECONDS``) built a consumer per attempt whose start failed and
never closed it: "Unclosed AIOKafkaConsumer" (a ResourceWarning and an ERROR line) every 5 s
in the worker log of the broker-restart chaos test. Each test here starts the real client
against a port nobody listens on, several times, and counts the "Unclosed" warnings aiokafka
emits when the dropped clients are collected.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Awaitable, Callable, Iterator

import pytest
from aiokafka.errors import KafkaConnectionError
from prometheus_client import CollectorRegistry, Counter

from phaseflow.streams.backfill import TriggerFollower
from phaseflow.streams.core import kafka_clients
from phaseflow.streams.core.clock import ManualClock
from phaseflow.streams.core.kafka_clients import KafkaEndpoint
from phaseflow.streams.core.lifecycle import AsyncService
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.dlq_tracker import DeadLetterTracker
from phaseflow.streams.monitoring.commit_times import CommitTimes
from phaseflow.streams.monitoring.lag_sampler import LagSampler
from phaseflow.streams.monitoring.recent_alerts import RecentAlerts
from phaseflow.streams.notify import formats
from phaseflow.streams.notify.delivery import RouteDelivery
from phaseflow.streams.notify.routes import RouteFilter
from phaseflow.streams.notify.senders import HttpSender
from phaseflow.streams.notify.service import RouteNotifier
from phaseflow.streams.simulation import TriggerReader
from phaseflow.streams.tail import Tail
from tests.unit.test_notify_delivery import T0

#: Nothing listens on port 1: connecting is refused at once.
NOBODY_LISTENS = "127.0.0.1:1"
SETTINGS = Settings(broker_url=NOBODY_LISTENS, topic_prefix="t")
ATTEMPTS = 3


@pytest.fixture
def unclosed_clients() -> Iterator[Callable[[], list[str]]]:
    """Call it for the "Unclosed AIOKafka..." warnings of the clients dropped so far in the
    test (collected first)."""
    gc.collect()  # clients another test dropped are not this test's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)

        def unclosed() -> list[str]:
            gc.collect()
            return [str(w.message) for w in caught if "Unclosed AIOKafka" in str(w.message)]

        yield unclosed


async def fail_each_time(attempt: Callable[[], Awaitable[object]]) -> int:
    """Run ``attempt`` ATTEMPTS times; how many failed with the broker unreachable."""
    failures = 0
    for _ in range(ATTEMPTS):
        try:
            await attempt()
        except KafkaConnectionError:  # "Unable to bootstrap"; the reference is dropped here
            failures += 1
    return failures


async def test_the_count_sees_a_consumer_whose_failed_start_is_not_closed(
    unclosed_clients: Callable[[], list[str]],
) -> None:
    # What the worker did before the fix; the tests below would not see a leak without this.
    async def start_and_drop() -> None:
        await kafka_clients.consumer(KafkaEndpoint(NOBODY_LISTENS)).start()

    assert await fail_each_time(start_and_drop) == ATTEMPTS
    assert len(unclosed_clients()) == ATTEMPTS


@pytest.mark.parametrize("kind", ["consumer", "producer", "admin"])
async def test_started_closes_a_client_whose_start_failed(
    kind: str, unclosed_clients: Callable[[], list[str]]
) -> None:
    endpoint = KafkaEndpoint(NOBODY_LISTENS)
    build = {
        "consumer": lambda: kafka_clients.consumer(endpoint),
        "producer": lambda: kafka_clients.producer(endpoint),
        "admin": lambda: kafka_clients.admin(endpoint),
    }[kind]

    async def start() -> object:
        return await kafka_clients.started(build())

    assert await fail_each_time(start) == ATTEMPTS
    assert unclosed_clients() == []


@pytest.mark.parametrize("follower", [DeadLetterTracker, RecentAlerts])
async def test_a_topic_follower_polled_while_the_broker_is_down_leaks_no_consumer(
    follower: Callable[[Settings], DeadLetterTracker | RecentAlerts],
    unclosed_clients: Callable[[], list[str]],
) -> None:
    feed = follower(SETTINGS)
    assert await fail_each_time(feed.poll) == ATTEMPTS
    await feed.stop()
    assert unclosed_clients() == []


async def test_a_lag_sampler_that_cannot_start_leaks_no_client(
    unclosed_clients: Callable[[], list[str]],
) -> None:
    sampler = LagSampler(SETTINGS, request_timeout=2.0)
    assert await fail_each_time(sampler.start) == ATTEMPTS
    assert unclosed_clients() == []


async def test_commit_times_that_cannot_start_leak_no_consumer(
    unclosed_clients: Callable[[], list[str]],
) -> None:
    commit_times = CommitTimes(SETTINGS, timeout=2.0)
    assert await fail_each_time(commit_times.start) == ATTEMPTS
    assert unclosed_clients() == []


async def test_a_notifier_route_that_cannot_start_leaks_no_consumer(
    unclosed_clients: Callable[[], list[str]],
) -> None:
    sender = HttpSender(
        "http://127.0.0.1:1/hook",
        formats.webhook_body,
        setting="PHASEFLOW_NOTIFY_WEBHOOK_URL",
        timeout=1,
    )

    async def no_letters(_key: str, _value: bytes) -> None:
        raise AssertionError("nothing is delivered when the consumer cannot start")

    delivery = RouteDelivery(
        SETTINGS,
        "test",
        sender,
        RouteFilter(),
        dead_letter=no_letters,
        clock=ManualClock(T0),
        outcomes=Counter("n", "n", ["route", "outcome"], registry=CollectorRegistry()),
    )
    notifier = RouteNotifier(SETTINGS, delivery)
    assert await fail_each_time(notifier.start) == ATTEMPTS
    assert unclosed_clients() == []


def _readers() -> dict[str, Callable[[], AsyncService]]:
    return {
        "TriggerReader": lambda: TriggerReader(SETTINGS),
        "TriggerFollower": lambda: TriggerFollower(SETTINGS),
        "Tail": lambda: Tail(SETTINGS, ["triggers"]),
    }


@pytest.mark.parametrize("name", sorted(_readers()))
async def test_a_reader_made_and_never_started_holds_no_client(
    name: str, unclosed_clients: Callable[[], list[str]]
) -> None:
    # A command that fails before it reads (a bad argument, a refused publish) drops its
    # reader unstarted; the reader built its consumer in __init__ before.
    for _ in range(ATTEMPTS):
        _readers()[name]()
    assert unclosed_clients() == []


@pytest.mark.parametrize("name", ["TriggerReader", "TriggerFollower"])
async def test_a_reader_that_cannot_start_leaks_no_client_and_says_it_is_not_started(
    name: str, unclosed_clients: Callable[[], list[str]]
) -> None:
    reader = _readers()[name]()
    assert await fail_each_time(reader.start) == ATTEMPTS
    with pytest.raises(RuntimeError, match="not started"):
        await reader.read(0.1)  # type: ignore[attr-defined]
    await reader.stop()
    await reader.stop()  # idempotent
    assert unclosed_clients() == []
