"""Table recovery asks the broker for changelog highwaters (streams/faust_recovery.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka

from phaseflow.streams.app import build_app
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.faust_recovery import _highwaters_from_the_broker


class FakeConsumer:
    def __init__(self) -> None:
        self.asked: list[Any] = []

    def last_stable_offset(self, _tp: Any) -> None:
        return None  # what aiokafka answers before the first fetch of a partition

    async def end_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        self.asked.append(partitions)
        return dict.fromkeys(partitions, 49)


async def test_building_the_app_makes_recovery_read_highwaters_from_the_broker(
    tmp_path: Path,
) -> None:
    build_app(Settings(topic_prefix="pf", data_dir=tmp_path, processing_guarantee="exactly_once"))
    thread_class: Any = faust_aiokafka.AIOKafkaConsumerThread
    assert thread_class._highwaters is _highwaters_from_the_broker
    consumer = FakeConsumer()

    class Thread:
        def _ensure_consumer(self) -> FakeConsumer:
            return consumer

    # In a transaction, stock faust-streaming would answer {tp: None} here.
    assert await _highwaters_from_the_broker(Thread(), ["changelog-0"]) == {"changelog-0": 49}
    assert consumer.asked == [["changelog-0"]]
