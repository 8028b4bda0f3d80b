"""Under exactly_once a readiness batch that sent outputs commits at once when the agent has
nothing else to handle (agents/prompt_commit.py, streams/core/faust_prompt_commit.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.transport import consumer as faust_consumer

from phaseflow.agents.prompt_commit import OutputsSent, PromptCommit
from phaseflow.streams.core.faust_prompt_commit import commit_outputs_now
from phaseflow.streams.core.topics import TopicName


class Consumer:
    """Faust's own commit guard (one commit at a time; a caller finding one under way waits
    for it and commits nothing) over a recorded commit."""

    commit = faust_consumer.Consumer.commit
    maybe_wait_for_commit_to_finish = faust_consumer.Consumer.maybe_wait_for_commit_to_finish

    def __init__(self) -> None:
        self.app = SimpleNamespace(client_only=False)
        self.loop = asyncio.get_running_loop()
        self._commit_fut: asyncio.Future[None] | None = None
        self.committed: list[tuple[Any, bool]] = []

    @property
    def commits(self) -> int:
        return len(self.committed)

    async def force_commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        self.committed.append((topics, start_new_transaction))
        return True


class Sent:
    def __init__(self) -> None:
        self.messages: list[tuple[TopicName, str, bytes]] = []

    async def send(self, topic: TopicName, key: str, value: bytes) -> None:
        self.messages.append((topic, key, value))


def stream(*waiting: object) -> Any:
    queue: asyncio.Queue[object] = asyncio.Queue()
    for item in waiting:
        queue.put_nowait(item)
    return SimpleNamespace(channel=SimpleNamespace(queue=queue))


def app(consumer: Consumer, *, exactly_once: bool = True) -> Any:
    return SimpleNamespace(consumer=consumer, in_transaction=exactly_once)


async def test_a_commit_under_way_is_waited_for_then_this_one_commits() -> None:
    consumer = Consumer()
    under_way: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    consumer._commit_fut = under_way  # began before this batch's acknowledgements
    committing = asyncio.create_task(commit_outputs_now(app(consumer)))
    await asyncio.sleep(0)
    assert consumer.commits == 0
    consumer._commit_fut = None
    under_way.set_result(None)
    assert await committing is True
    assert consumer.commits == 1  # Faust's commit() alone would have returned without one


async def test_at_least_once_never_commits_early() -> None:
    consumer = Consumer()
    assert await commit_outputs_now(app(consumer, exactly_once=False)) is False
    assert consumer.commits == 0


async def test_a_batch_that_sent_outputs_commits_when_nothing_waits() -> None:
    consumer = Consumer()
    outputs = OutputsSent(Sent())
    prompt = PromptCommit(app(consumer), outputs, enabled=True)
    await outputs.send(TopicName.PHASE_TRIGGERS, "2026-02-01", b"{}")
    assert await prompt.after_batch(stream()) is True
    assert consumer.commits == 1
    assert await prompt.after_batch(stream()) is False  # nothing new sent: no second commit
    assert consumer.commits == 1


async def test_a_batch_that_sent_nothing_does_not_commit() -> None:
    consumer = Consumer()
    prompt = PromptCommit(app(consumer), OutputsSent(Sent()), enabled=True)
    assert await prompt.after_batch(stream()) is False
    assert consumer.commits == 0


async def test_outputs_sent_during_a_backlog_commit_when_it_ends() -> None:
    consumer = Consumer()
    outputs = OutputsSent(Sent())
    prompt = PromptCommit(app(consumer), outputs, enabled=True)
    await outputs.send(TopicName.ALERTS, "k", b"{}")
    assert await prompt.after_batch(stream("next record")) is False  # the periodic commit's
    assert consumer.commits == 0
    assert await prompt.after_batch(stream()) is True  # the backlog ended: commit them now
    assert consumer.commits == 1


async def test_switched_off_it_never_commits() -> None:
    consumer = Consumer()
    outputs = OutputsSent(Sent())
    prompt = PromptCommit(app(consumer), outputs, enabled=False)
    await outputs.send(TopicName.PHASE_TRIGGERS, "k", b"{}")
    assert await prompt.after_batch(stream()) is False
    assert consumer.commits == 0


async def test_outputs_pass_through_unchanged() -> None:
    inner = Sent()
    outputs = OutputsSent(inner)
    await outputs.send(TopicName.RERUN_REQUESTS, "k", b"v")
    assert inner.messages == [(TopicName.RERUN_REQUESTS, "k", b"v")]
