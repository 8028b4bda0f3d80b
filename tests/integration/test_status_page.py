"""The status page (``GET /``) in a real headless Chromium, and ``phaseflow status``, against a
worker with a seeded day: the phase grid, dead letters and alerts, and the page refreshing
itself when a phase moves on.

``PHASEFLOW_UPDATE_SCREENSHOT=1`` also writes ``docs/status-page.png`` (off in CI, so a run
never dirties the tree).
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from phaseflow.streams.core.registry import load_registry
from phaseflow.streams.core.settings import Settings
from phaseflow.streams.core.topics import ensure_topics
from phaseflow.streams.local.worker_process import WorkerProcess
from phaseflow.streams.publish import CompletionPublisher
from phaseflow.streams.simulation import make_completion, phase_completions
from phaseflow.streams.status import run_status
from tests.fixtures.polling import poll
from tests.integration.test_first_path import read_triggers

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
HAVE_CHROMIUM = CHROMIUM.exists() and CHROMEDRIVER.exists()
# Without these Chromium waits on network services the closed network never answers.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1500,1000",
)
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "status-page.png"
ZONE = ZoneInfo("America/New_York")
# Yesterday in the pipeline's zone: overnight mode, every required processor expected.
GAME_DATE = (datetime.now(ZONE) - timedelta(days=1)).date()
EARLIER_DATE = GAME_DATE - timedelta(days=1)
PHASE3_FIRST = ["player_game_summary", "upcoming_player_game_context"]
PHASE3_FAILED = "team_offense_game_summary"
PHASE3_REST = ["team_defense_game_summary", "upcoming_team_game_context"]
PHASE4_FIRST = ["player_daily_cache", "ml_feature_store"]


async def _seed(settings: Settings) -> None:
    """GAME_DATE: phases 1-2 complete, phase 3 two of five and one failure. EARLIER_DATE: two
    phase-4 completions, held until phase 3 fires (phase order). One unreadable completion (a
    dead letter)."""
    registry = load_registry(settings.registry_path)
    today = datetime.now(ZONE).date()
    async with CompletionPublisher(settings) as publisher:
        for phase in (1, 2):
            for completion in phase_completions(registry, GAME_DATE, phase, today=today):
                await publisher.publish(completion)
        for name in PHASE3_FIRST:
            await publisher.publish(make_completion(name, GAME_DATE, 3))
        await publisher.publish(make_completion(PHASE3_FAILED, GAME_DATE, 3, status="failed"))
        for name in PHASE4_FIRST:
            await publisher.publish(make_completion(name, EARLIER_DATE, 4))
        await publisher.publish_raw(GAME_DATE.isoformat().encode(), b"not json at all")


async def _summary_when(
    settings: Settings, ready: Callable[[dict[str, Any]], bool], within: float = 90.0
) -> dict[str, Any]:
    """``GET /status`` until ``ready(body)`` (the worker processed the seed, the tracker and
    the alert feed polled)."""
    body: dict[str, Any] = {}
    async with aiohttp.ClientSession(f"http://127.0.0.1:{settings.web_port}") as http:

        async def got_there() -> bool:
            nonlocal body
            async with http.get("/status") as response:
                assert response.status == 200, await response.text()
                body = await response.json()
            return ready(body)

        await poll(got_there, "the status the test waits for", give_up_after=within)
    return body


def _seeded(body: dict[str, Any]) -> bool:
    dates = {day["game_date"]: day["phases"] for day in body["dates"]}
    phases = dates.get(GAME_DATE.isoformat())
    return (
        phases is not None
        and EARLIER_DATE.isoformat() in dates
        and PHASE3_FAILED in phases[2]["processors"]
        and body["dead_letters"]["unreplayed"] >= 1
        and any(alert["kind"] == "dlq" for alert in body["alerts"])
    )


def _browser(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # Both paths given: Selenium does not run selenium-manager (which would download a driver).
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


# Read in one script call each: the page swaps its <main> every few seconds, so element handles
# kept across calls could go stale between a find and a read.
_CELLS_JS = """
return Array.from(document.querySelectorAll('tr[data-date="' + arguments[0] + '"] td[data-state]'))
    .map(function (cell) { return [cell.dataset.phase, cell.dataset.state, cell.innerText]; });
"""
_TEXT_JS = (
    "var found = document.querySelector(arguments[0]); return found ? found.innerText : null;"
)


def _cells(driver: webdriver.Chrome, day: str) -> dict[int, tuple[str, str]]:
    """Phase -> (state, text) of the grid row of ``day``."""
    found = driver.execute_script(_CELLS_JS, day)
    return {int(phase): (state, text) for phase, state, text in found}


def _states(driver: webdriver.Chrome, day: str) -> dict[int, str]:
    return {phase: state for phase, (state, _) in _cells(driver, day).items()}


def _text(driver: webdriver.Chrome, selector: str) -> str:
    return str(driver.execute_script(_TEXT_JS, selector))


def _save_whole_page(driver: webdriver.Chrome, path: Path) -> None:
    # The window's viewport is smaller than the page; make it as tall as the page for the shot.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    metrics = {"width": 1400, "height": int(height), "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _look_at_the_page(
    url: str, profile: Path, group: str, finish_phase_3: Callable[[], None]
) -> str:
    """Load the page, check the grid, let phase 3 finish and wait for the page to show it
    without a reload; returns the text of the phase-3 cell at the end."""
    driver = _browser(profile)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: _states(d, GAME_DATE.isoformat()))
        assert driver.title == "phaseflow status"
        assert _states(driver, GAME_DATE.isoformat()) == {
            1: "done",
            2: "triggered",
            3: "failed",
            4: "not_started",
            5: "not_started",
            6: "not_started",
        }
        cells = _cells(driver, GAME_DATE.isoformat())
        assert f"failed: {PHASE3_FAILED}" in cells[3][1]
        state, text = _cells(driver, EARLIER_DATE.isoformat())[4]
        assert state == "waiting"
        assert "held until phase 3 fires (2/5 done)" in text
        assert "1 not replayed, 0 replay(s) failed again" in _text(driver, "#dead-letters")
        assert "dlq" in _text(driver, "#alerts")
        assert group in _text(driver, f'#lag tr[data-group="{group}"]')
        if os.environ.get("PHASEFLOW_UPDATE_SCREENSHOT") == "1":
            _save_whole_page(driver, SCREENSHOT)

        driver.execute_script("window.phaseflowSameDocument = true;")
        finish_phase_3()
        # The page's own refresh brings the trigger in, without reloading the document.
        WebDriverWait(driver, 60).until(
            lambda d: _states(d, GAME_DATE.isoformat()).get(3) == "triggered"
        )
        assert driver.execute_script("return window.phaseflowSameDocument === true;")
        return _cells(driver, GAME_DATE.isoformat())[3][1]
    finally:
        driver.quit()


async def test_status_page_in_chromium_and_phaseflow_status(
    make_settings: Callable[..., Settings],
    start_worker: Callable[[Settings], WorkerProcess],
    tmp_path: Path,
) -> None:
    if not HAVE_CHROMIUM:
        missing = (
            "needs Debian's chromium and chromium-driver (/usr/bin/chromium, "
            "/usr/bin/chromedriver); .ci/run installs them"
        )
        # A developer machine without a browser may skip; CI (which sets this) may not.
        if os.environ.get("PHASEFLOW_TEST_REQUIRE_CHROMIUM"):
            pytest.fail(missing)
        pytest.skip(missing)
    settings = make_settings(lag_sample_interval_seconds=1.0)
    await ensure_topics(settings)
    worker = start_worker(settings)
    await asyncio.to_thread(worker.wait_ready, 120.0)
    await _seed(settings)
    triggers = await read_triggers(settings, want=1, quiet_for=0.0)
    assert [(t.game_date, t.phase) for t in triggers] == [(GAME_DATE, 3)]
    body = await _summary_when(settings, _seeded)
    # The newest dates first, and the phases as /status/{date} reports them.
    assert [day["game_date"] for day in body["dates"]] == [
        GAME_DATE.isoformat(),
        EARLIER_DATE.isoformat(),
    ]

    async with (
        aiohttp.ClientSession(f"http://127.0.0.1:{settings.web_port}") as http,
        http.get("/status", params={"date": "2026-02-30"}) as response,
    ):
        assert response.status == 400
        assert (await response.json())["field"] == "date"

    # phaseflow status: the same information in a terminal.
    url = f"http://127.0.0.1:{settings.web_port}"
    out = io.StringIO()
    code = await asyncio.to_thread(run_status, settings, game_date=GAME_DATE, url=url, out=out)
    print(out.getvalue())  # shown when the test fails
    assert code == 0, out.getvalue()
    lines = out.getvalue().splitlines()
    start = lines.index(f"GAME DATE {GAME_DATE.isoformat()}") + 2  # past the column header
    phase_rows = [line.split() for line in lines[start : lines.index("", start)]]
    rows = {row[0]: row[2] for row in phase_rows}
    assert rows == {
        "1": "DONE",
        "2": "TRIGGERED",
        "3": "FAILED",
        "4": "NOT_STARTED",
        "5": "NOT_STARTED",
        "6": "NOT_STARTED",
    }
    assert "1 not replayed, 0 replay(s) failed again" in out.getvalue()
    assert settings.app_id in out.getvalue()

    loop = asyncio.get_running_loop()

    def finish_phase_3() -> None:
        # From the browser's thread: publish on the test's loop and wait for it.
        asyncio.run_coroutine_threadsafe(_finish_phase_3(settings), loop).result(60)

    final = await asyncio.to_thread(
        _look_at_the_page,
        url + "/",
        tmp_path / "chromium-profile",
        settings.app_id,
        finish_phase_3,
    )
    assert "triggered phase 4 (ready)" in final


async def _finish_phase_3(settings: Settings) -> None:
    async with CompletionPublisher(settings) as publisher:
        for name in PHASE3_REST:
            await publisher.publish(make_completion(name, GAME_DATE, 3))
