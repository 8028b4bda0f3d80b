"""The readiness agent's side of committing outputs at once
(``phaseflow.streams.core.faust_prompt_commit``): which batches ask for it."""

from __future__ import annotations

from typing import Any

from phaseflow.streams.core.faust_prompt_commit import commit_outputs_now
from phaseflow.streams.core.publisher import Publisher
from phaseflow.streams.core.topics import TopicName


class OutputsSent:
    """A publisher that notes whether anything went out since it was last cleared."""

    def __init__(self, inner: Publisher) -> None:
        self._inner = inner
        self.pending = False

    async def send(self, topic: TopicName, key: str, value: bytes) -> None:
        await self._inner.send(topic, key, value)
        self.pending = True


class PromptCommit:
    """Once a batch is acknowledged: if outputs (triggers, rerun requests, alerts, dead letters)
    went out since the last prompt commit and nothing else waits to be handled, commit at once
    (exactly_once: they become readable one commit round trip later, not at the next periodic
    commit). During a backlog the periodic commit stays (each commit holds the agent up for
    its round trip) and the outputs are committed at the latest when the backlog ends; a batch
    that sent nothing, with nothing pending, never commits early, so the commit rate rises only
    while outputs go out on a worker that keeps up."""

    def __init__(self, app: Any, outputs: OutputsSent, *, enabled: bool) -> None:
        self._app = app
        self._outputs = outputs
        self._enabled = enabled

    async def after_batch(self, stream: Any) -> bool:
        """Commit if due (see the class); whether it committed."""
        if not (self._enabled and self._outputs.pending and _nothing_ready(stream)):
            return False
        self._outputs.pending = False
        return await commit_outputs_now(self._app)


def _nothing_ready(stream: Any) -> bool:
    queue = getattr(stream.channel, "queue", None)
    return queue is None or queue.empty()
