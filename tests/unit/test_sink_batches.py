"""How BufferedSink cuts what is buffered into batches (no BigQuery needed)."""

from __future__ import annotations

from phaseflow.sinks.base import Batch, BufferedSink


class RecordingSink(BufferedSink[int]):
    def __init__(self, **options: int) -> None:
        super().__init__(flush_seconds=60, **options)
        self.batches: list[list[int]] = []

    async def setup(self) -> None:
        pass

    async def write_batch(self, batch: Batch[int]) -> None:
        self.batches.append([entry.row for entry in batch.entries])


async def test_batches_are_batch_rows_unless_a_larger_batch_is_allowed() -> None:
    steady = RecordingSink(batch_rows=10, max_buffer_rows=100)
    catching_up = RecordingSink(batch_rows=10, max_buffer_rows=100, max_batch_rows=20)
    for sink in (steady, catching_up):
        for row in range(25):
            sink.add(row)
        await sink.flush()

    assert [len(b) for b in steady.batches] == [10, 10, 5]
    assert [len(b) for b in catching_up.batches] == [20, 5]
    assert [row for b in catching_up.batches for row in b] == list(range(25))  # in order
    assert catching_up.durable_seq == 25


async def test_a_backlog_smaller_than_the_limit_is_one_batch() -> None:
    sink = RecordingSink(batch_rows=10, max_buffer_rows=100, max_batch_rows=100)
    for row in range(7):
        sink.add(row)
    await sink.flush()
    for row in range(7, 12):
        sink.add(row)
    await sink.flush()

    assert sink.batches == [list(range(7)), list(range(7, 12))]
