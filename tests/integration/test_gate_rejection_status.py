"""A phase-5 completion the validation gate rejects, through a running worker: ``GET /status``
and ``phaseflow status`` show phase 5 REJECTED with the gate's reason, not DONE."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.simulation import make_completion
from phaseflow.streams.status import run_status
from tests.fixtures.polling import poll

pytestmark = pytest.mark.integration

GAME_DATE = (datetime.now(ZoneInfo("America/New_York")) - timedelta(days=1)).date()
THIN = {"expected_players": 450, "completed_players": 200, "total_predictions": 5}
REASON = "5 predictions < minimum 10"


async def test_phase_5_rejected_by_the_gate_is_rejected_in_status(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
) -> None:
    settings = make_settings()
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    registry = load_registry(settings.registry_path)
    today = datetime.now(ZoneInfo(settings.pipeline_timezone)).date()
    async with CompletionPublisher(settings) as publisher:
        # Phase order: phase 5 is judged once phase 4 fired, so the upstream phases succeed
        # first (same date, same partition: read in this order).
        for spec in registry.phases:
            if spec.gated and spec.phase < 5:
                for name in sorted(spec.expected_processors(GAME_DATE, today)):
                    await publisher.publish(make_completion(name, GAME_DATE, spec.phase))
        await publisher.publish(
            make_completion("prediction_coordinator", GAME_DATE, 5, metadata=THIN)
        )

    phase5: dict[str, Any] = {}
    async with aiohttp.ClientSession(f"http://127.0.0.1:{settings.web_port}") as http:

        async def rejected() -> bool:
            nonlocal phase5
            async with http.get("/status", params={"date": GAME_DATE.isoformat()}) as response:
                assert response.status == 200, await response.text()
                body = await response.json()
            phases = [p for day in body["dates"] for p in day["phases"] if p["phase"] == 5]
            phase5 = phases[0] if phases else {}
            return bool(phase5.get("rejected"))

        await poll(rejected, "phase 5 rejected in GET /status", give_up_after=60.0)
    assert phase5["missing"] == []
    assert phase5["trigger"] is None
    assert REASON in phase5["rejected"]

    out = io.StringIO()
    url = f"http://127.0.0.1:{settings.web_port}"
    code = await asyncio.to_thread(run_status, settings, game_date=GAME_DATE, url=url, out=out)
    assert code == 0, out.getvalue()
    [row] = [line for line in out.getvalue().splitlines() if line.startswith("5 ")]
    assert row.split()[2] == "REJECTED", row
    assert f"rejected by the validation gate: {REASON}" in row
