"""After table recovery, stream partitions are sought to their committed offsets *before* they
are resumed, not after.

faust-streaming 0.15 ends a recovery (``Recovery.on_recovery_completed``) by resuming the stream
partitions and only then awaiting ``perform_seek``: a seek to the committed offsets, done in the
consumer's thread, that finally overwrites Faust's read offsets with the committed ones. The
fetcher is running (it read the changelogs), so between the two it fetches and delivers stream
records from aiokafka's own position; the seek and the read-offset overwrite then land in the
middle of that. Seen in the two-workers kill -9 test (exactly_once, on a busy machine, every
few runs), with the watchdog's report of the partition (streams/faust_consumer_view.py):

* records handled while the seek was in flight ("phase 3 of 2026-02-03 started" logged between
  "Seek stream partitions to committed offsets" and "Worker ready");
* then aiokafka's position at the partition's end (99) while Faust's read offset was back at
  the committed offset (60) or even below it (48 with 59 committed): the records in between
  were fetched but never delivered, nothing fetched them again, the lag watchdog restarted the
  worker 30-60 s later, and a restarted worker could hit the same race again;
* or a delivered record far ahead of the overwritten read offset, which Faust takes for a gap
  of transaction markers and commits over: records skipped for good, lag 0, the date's next
  phase never fired and no tick could repair it.

``seek_streams_before_resuming`` replaces that method with the same steps in the safe order: the
stream partitions stay paused (as recovery left them) while they are sought, and are resumed
once Faust's read offsets and aiokafka's positions both stand at the committed offsets.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from faust.tables.recovery import Recovery

from phaseflow.streams.recovery_progress import is_recording, recording

_INSTALLED = "__phaseflow_seek_streams_before_resuming__"


async def _on_recovery_completed(self: Any, generation_id: int = 0) -> None:
    """faust 0.15.3's ``Recovery.on_recovery_completed`` with the seek before the resume."""
    consumer = self.app.consumer
    self.log.info("Restore complete!")
    await self.app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callback_coros = [
        asyncio.ensure_future(
            table.on_recovery_completed(
                self.actives_for_table[table],
                self.standbys_for_table[table],
            )
        )
        for table in self.tables.values()
    ]
    if callback_coros:
        await asyncio.wait(callback_coros)
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning(
            "Recovery rebalancing again app id %s param %s",
            self.app.consumer_generation_id,
            generation_id,
        )
        return
    streams = {tp for tp in assignment if not self._is_changelog_tp(tp)}
    if assignment:
        # Paused while sought: nothing is fetched or delivered from a position being replaced.
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
    if self.app.consumer_generation_id != generation_id:
        self.log.warning("Recovery rebalancing again while seeking stream partitions")
        return
    consumer.resume_partitions(streams)
    self.completed.set()
    self.log.dev("Resume stream partitions")
    self.app.flow_control.resume()
    consumer.resume_flow()
    # finally make sure the fetcher is running.
    await cast(Any, self.app)._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not self.app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    self.app.on_rebalance_end()
    self.log.info("Worker ready")


def seek_streams_before_resuming() -> None:
    """Install the reordered ``on_recovery_completed`` on Faust's Recovery (idempotent); keeps
    streams/recovery_progress.py's generation recording if that was installed first."""
    recovery_class: Any = Recovery
    if getattr(recovery_class, _INSTALLED, False):
        return
    current = recovery_class.on_recovery_completed
    replacement = recording(_on_recovery_completed) if is_recording(current) else None
    recovery_class.on_recovery_completed = replacement or _on_recovery_completed
    setattr(recovery_class, _INSTALLED, True)
