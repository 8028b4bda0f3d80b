"""Records Faust does not take (its paused changelog partitions) hold no fetch of the other
partitions (streams/faust_fetch_hold.py), on a real aiokafka Fetcher with no broker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka.consumer.fetcher import Fetcher, FetchResult
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.structs import TopicPartition

from phaseflow.streams.faust_fetch_hold import fetch_only_what_is_taken

STREAM = TopicPartition("pf.phase-completions", 0)
CHANGELOG = TopicPartition("pf-app-readiness-changelog", 0)


async def idle_fetcher() -> tuple[Any, Any]:
    """A Fetcher over STREAM and CHANGELOG (one broker, node 1, both at offset 0) whose
    background routine is stopped, so its decisions can be asked for directly."""
    cluster = SimpleNamespace(leader_for_partition=lambda _tp: 1, broker_metadata=lambda _n: {})
    client = SimpleNamespace(
        cluster=cluster, _loop=asyncio.get_running_loop(), _metadata_max_age_ms=300_000
    )
    subscriptions = SubscriptionState()
    subscriptions.assign_from_user({STREAM, CHANGELOG})
    assignment = subscriptions.subscription.assignment
    for tp in (STREAM, CHANGELOG):
        assignment.state_value(tp).reset_to(0)
    fetcher = Fetcher(client, subscriptions)
    await fetcher.close()
    return fetcher, assignment


def just_fetched(fetcher: Any, tp: TopicPartition, assignment: Any) -> None:
    """Records of ``tp`` that arrived a moment ago and nobody took yet."""
    fetcher._records[tp] = FetchResult(
        tp, assignment=assignment, partition_records=object(), backoff=0.1
    )


def partitions_fetched_next(fetcher: Any, assignment: Any) -> set[TopicPartition]:
    requests = fetcher._get_actions_per_node(assignment)[0]
    return {
        TopicPartition(topic, partition)
        for _node, request in requests
        for topic, partitions in request.topics
        for partition, _offset, _max_bytes in partitions
    }


async def test_records_of_a_partition_faust_does_not_take_hold_no_fetch() -> None:
    fetch_only_what_is_taken()
    fetcher, assignment = await idle_fetcher()
    await fetcher.fetched_records({STREAM}, timeout=0)  # Faust: the changelog is "paused"
    just_fetched(fetcher, CHANGELOG, assignment)  # the worker's own table write, fetched back
    # The completions partition is fetched at once (unpatched aiokafka: nothing for 0.1 s);
    # the changelog is not fetched again while its records are buffered.
    assert partitions_fetched_next(fetcher, assignment) == {STREAM}
    assert CHANGELOG in fetcher._records


async def test_records_the_consumer_takes_still_hold_the_fetch_until_taken() -> None:
    fetch_only_what_is_taken()
    fetcher, assignment = await idle_fetcher()
    await fetcher.fetched_records({STREAM, CHANGELOG}, timeout=0)
    just_fetched(fetcher, CHANGELOG, assignment)
    assert partitions_fetched_next(fetcher, assignment) == set()  # aiokafka's prefetch wait


async def test_a_consumer_asking_for_every_partition_is_unchanged() -> None:
    fetch_only_what_is_taken()
    fetcher, assignment = await idle_fetcher()
    await fetcher.fetched_records((), timeout=0)  # plain getmany(): every assigned partition
    just_fetched(fetcher, CHANGELOG, assignment)
    assert partitions_fetched_next(fetcher, assignment) == set()
