"""A worker whose BigQuery does not answer: ``phaseflow status`` (and ``GET /status``) says at
once that its sinks do not run and why, while their start is still retrying (a minute before
it counts as failed); before, the first minute showed "not running" and no reason at all."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from datetime import date

import aiohttp

from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.local.ports import free_port
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.status import run_status
from tests.fixtures.polling import poll


async def test_status_names_why_the_sinks_are_not_running_while_they_start(
    make_settings: Callable[..., Settings], start_worker: Callable[..., WorkerProcess]
) -> None:
    nothing_listens = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(bigquery_endpoint=nothing_listens, bigquery_project="demo")
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    sinks: dict[str, dict[str, object]] = {}

    async def both_retrying() -> bool:
        nonlocal sinks
        url = f"http://127.0.0.1:{settings.web_port}/status"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            sinks = (await response.json())["sinks"]
        return all(str(sink["problem"]).startswith("starting: ") for sink in sinks.values())

    # Well inside the minute the setup retries for.
    await poll(both_retrying, "both sinks to show the error they retry", give_up_after=30)
    assert set(sinks) == {"prediction_sink", "audit_sink"}
    for sink in sinks.values():
        assert sink["running"] is False
        assert sink["problem"] == (
            f"starting: cannot connect to BigQuery at {nothing_listens}: Connection refused "
            "(retrying)"
        )
    out = io.StringIO()
    code = await asyncio.to_thread(run_status, settings, game_date=date(2026, 12, 5), out=out)
    lines = out.getvalue().splitlines()
    section = lines[lines.index("BIGQUERY SINKS") + 1 : lines.index("CONSUMER LAG") - 1]
    assert code == 0
    assert [line.split()[:3] for line in section[1:]] == [
        ["prediction_sink", "NOT", "RUNNING"],
        ["audit_sink", "NOT", "RUNNING"],
    ]
    assert all(
        f"starting: cannot connect to BigQuery at {nothing_listens}: Connection refused" in line
        for line in section[1:]
    ), section
