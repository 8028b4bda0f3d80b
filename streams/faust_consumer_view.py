"""What Faust's consumer knows about one partition: for the watchdog's report of a stall.

A partition the lag monitor sees stuck can be stuck at several places: Faust never asks aiokafka
for it (not in its active set: paused for recovery, buffer full), aiokafka does not fetch it
(paused, no position, the last stable offset held by an open transaction), Faust drops what is
fetched (its read offset is ahead), or the agent is stuck on a record or a commit waits. One log
line with every one of these lets a single failed run tell them apart. It reads Faust and
aiokafka internals from the app's thread, so it is a best-effort snapshot, never a decision.
"""

from __future__ import annotations

from typing import Any

from faust.types import TP

from phaseflow.streams.core.faust_table_writes import lock_holder, pending_table_writes


def _aiokafka_state(consumer: Any, tp: TP) -> str:
    client = getattr(getattr(consumer, "_thread", None), "_consumer", None)
    if client is None:
        return "aiokafka consumer not started"
    assignment = client._subscription.subscription
    if assignment is None or tp not in assignment.assignment.tps:
        return "aiokafka: not assigned"
    state = assignment.assignment.state_value(tp)
    position = state._position
    return (
        f"aiokafka: position={position} highwater={state.highwater} lso={state.lso} "
        f"paused={state.paused} status={state._status}"
    )


def describe_partition(app: Any, topic: str, partition: int) -> str:
    """One line: Faust's and aiokafka's view of ``topic[partition]`` and the record lock."""
    tp = TP(topic, partition)
    parts: list[str] = [f"{topic}[{partition}]"]
    try:
        consumer = app.consumer
        active = consumer._active_partitions
        parts += [
            f"assigned={tp in consumer.assignment()}",
            f"faust active={None if active is None else tp in active}",
            f"paused={tp in consumer._paused_partitions}",
            f"buffered={tp in consumer._buffered_partitions}",
            f"read_offset={consumer._read_offset.get(tp)}",
            f"committed={consumer._committed_offset.get(tp)}",
            f"flow_active={consumer.flow_active}",
            f"in_recovery={app.in_recovery}",
            _aiokafka_state(consumer, tp),
        ]
    except Exception as error:  # noqa: BLE001 - a report must not fail the watchdog
        parts.append(f"(consumer state unreadable: {error!r})")
    parts += [
        f"record lock held by {lock_holder(app)}",
        f"unacknowledged table writes={len(pending_table_writes(app))}",
    ]
    return "; ".join(parts)
