"""After recovery the stream partitions are sought before they are resumed
(streams/faust_stream_seek.py): nothing is fetched from a position the seek replaces."""

from __future__ import annotations

from typing import Any

from faust.tables.recovery import Recovery
from faust.types import TP

from phaseflow.streams.faust_stream_seek import _on_recovery_completed, seek_streams_before_resuming
from phaseflow.streams.recovery_progress import is_recording

STREAM = TP("pf.phase-completions", 0)
CHANGELOG = TP("pf-app-readiness-changelog", 0)


class Calls(list[str]):
    def note(self, what: str) -> None:
        self.append(what)


class FakeConsumer:
    def __init__(self, calls: Calls, app: FakeApp) -> None:
        self.calls = calls
        self.app = app

    def assignment(self) -> set[TP]:
        return {STREAM, CHANGELOG}

    async def perform_seek(self) -> None:
        self.calls.note("seek")
        if self.app.rebalance_during_seek:
            self.app.consumer_generation_id += 1

    def resume_partitions(self, tps: set[TP]) -> None:
        self.calls.note(f"resume {sorted(tp.topic for tp in tps)}")

    def resume_flow(self) -> None:
        self.calls.note("resume flow")


class FakeSignal:
    async def send(self) -> None:
        return None


class FakeApp:
    def __init__(self, calls: Calls, *, rebalance_during_seek: bool = False) -> None:
        self.consumer_generation_id = 7
        self.rebalance_during_seek = rebalance_during_seek
        self.consumer = FakeConsumer(calls, self)
        self.on_rebalance_complete = FakeSignal()
        self.flow_control = type("Flow", (), {"resume": lambda _self: None})()
        self.conf = type("Conf", (), {"broker_request_timeout": 5.0})()
        self.assignor = type("Assignor", (), {"assigned_standbys": lambda _self: set()})()
        self._fetcher = type("Fetcher", (), {"maybe_start": _nothing})()
        self.rebalance_ended = False

    def on_rebalance_end(self) -> None:
        self.rebalance_ended = True


async def _nothing(*_: Any) -> None:
    return None


class FakeLog:
    def info(self, *_: Any) -> None: ...
    def warning(self, *_: Any) -> None: ...
    def dev(self, *_: Any) -> None: ...


class FakeRecovery:
    def __init__(self, app: FakeApp) -> None:
        self.app = app
        self.log = FakeLog()
        self.completed = type("Done", (), {"set": lambda _self: None})()
        self.tables = FakeTables()

    def _set_recovery_ended(self) -> None: ...

    def _is_changelog_tp(self, tp: TP) -> bool:
        return tp == CHANGELOG

    async def _wait(self, coro: Any, **_: Any) -> None:
        await coro


class FakeTables(dict[Any, Any]):
    def on_actives_ready(self) -> None: ...
    def on_standbys_ready(self) -> None: ...


async def test_stream_partitions_are_resumed_only_after_the_seek() -> None:
    calls = Calls()
    app = FakeApp(calls)
    await _on_recovery_completed(FakeRecovery(app), generation_id=7)
    assert calls == ["seek", "resume ['pf.phase-completions']", "resume flow"]
    assert app.rebalance_ended


async def test_a_rebalance_during_the_seek_leaves_the_partitions_to_the_next_recovery() -> None:
    calls = Calls()
    app = FakeApp(calls, rebalance_during_seek=True)
    await _on_recovery_completed(FakeRecovery(app), generation_id=7)
    assert calls == ["seek"]
    assert not app.rebalance_ended


def test_installed_on_faust_recovery_keeping_the_generation_recording() -> None:
    seek_streams_before_resuming()
    installed: Any = Recovery.on_recovery_completed
    assert installed is _on_recovery_completed or (
        is_recording(installed) and installed.__wrapped__ is _on_recovery_completed
    )
