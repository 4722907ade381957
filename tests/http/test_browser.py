"""The dashboard in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium).

Skipped where no browser is installed; ``.ci/run`` installs one. The test signs
in, watches a job it enqueued go from pending to completed, retries a failed job
from its detail panel, checks that job data is shown as text, that a recurring
job's detail lists its next runs, and saves a screenshot in its pytest tmp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.http.conftest import LiveServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no browser: install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")

from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1440,1100"]
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium; Selenium Manager stays offline (the driver path is given)."""
    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 20, what: str = "") -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, message=what)


def click(driver: WebDriver, selector: str) -> None:
    """Click, again if the auto-refresh replaced the element in between."""
    def clicked(d: WebDriver) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, selector).click()
        except (StaleElementReferenceException, NoSuchElementException):
            return False
        return True

    wait_for(driver, clicked, what=f"clicking {selector}")


def text_of(driver: WebDriver, selector: str) -> str | None:
    """The text of the first match, read in one step (the auto-refresh replaces table rows)."""
    text: str | None = driver.execute_script(
        "const node = document.querySelector(arguments[0]); return node ? node.textContent : null;", selector)
    return text


def status_in_page(driver: WebDriver, job_id: int) -> str | None:
    return text_of(driver, f'#jobs tr[data-job-id="{job_id}"] td[data-col="status"]')


def test_dashboard_in_a_real_browser(browser: WebDriver, live_server: LiveServer, tmp_path: Path) -> None:
    with live_server.client() as api:
        watched = api.post("/jobs", json={"handler": "slow", "data": 1, "delay": 4, "name": "watched"}).json()
        failing = api.post("/jobs", json={"handler": "boom", "maxAttempts": 1, "name": "<b>bold</b>",
                                          "data": {"html": XSS}}).json()

        # sign in through the form the dashboard shows without a session
        browser.get(f"{live_server.url}/dashboard")
        token_input = wait_for(browser, lambda d: d.find_element(By.ID, "token"), what="the sign-in form")
        token_input.send_keys(live_server.token)
        token_input.submit()
        wait_for(browser, lambda d: d.execute_script("return document.body.dataset.loaded === 'true'"),
                 what="the dashboard loaded")
        browser.get_log("browser")  # drop the sign-in page's expected 401

        # the page sees the job change status by itself (auto-refresh)
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = status_in_page(browser, watched["id"])
            if status and (not seen or seen[-1] != status):
                seen.append(status)
            if status == "completed":
                break
            time.sleep(0.1)
        assert seen[0] == "pending" and seen[-1] == "completed", seen

        # the failed job: open its detail, where data is text, and retry it
        wait_for(browser, lambda d: status_in_page(d, failing["id"]) == "failed", what="the job failed")
        click(browser, f'#jobs tr[data-job-id="{failing["id"]}"]')
        wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history tbody tr.run")) == 1,
                 what="the history of the failed job")
        assert browser.find_element(By.ID, "detail-data").text == json.dumps({"html": XSS}, indent=2)
        assert "RuntimeError: boom" in (text_of(browser, "#detail-error") or "")
        assert text_of(browser, f'#jobs tr[data-job-id="{failing["id"]}"] td.label') == "<b>bold</b> (boom)"
        assert browser.find_elements(By.CSS_SELECTOR, "#jobs b, #detail script, #detail img") == []
        assert browser.execute_script("return window.__xss") is None

        assert browser.find_element(By.CSS_SELECTOR, '#detail [data-action="retry"]').is_enabled()
        click(browser, '#detail [data-action="retry"]')
        wait_for(browser, lambda d: "retry done" in (text_of(d, "#toast") or ""), what="the retry toast")
        wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history tbody tr.run")) == 2,
                 what="a second run in the history")
        assert len(api.get(f"/jobs/{failing['id']}/history").json()["data"]) == 2
        wait_for(browser, lambda d: status_in_page(d, failing["id"]) == "failed", what="failed again")

        # a one-off job's detail has no next runs; a recurring job's lists five, the first its next run
        assert not browser.find_element(By.ID, "next-runs").is_displayed()
        weekly = api.post("/jobs", json={"handler": "echo", "name": "weekly", "schedule": "0 9 * * MON",
                                         "timezone": "Europe/Paris"}).json()
        wait_for(browser, lambda d: status_in_page(d, weekly["id"]) == "pending", what="the recurring job listed")
        click(browser, "#detail-close")  # the panel covers part of the table
        click(browser, f'#jobs tr[data-job-id="{weekly["id"]}"]')
        wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#detail-next-runs li")) == 5,
                 what="the recurring job's next runs")
        assert browser.find_element(By.ID, "next-runs").is_displayed()
        titles = browser.execute_script(
            "return [...document.querySelectorAll('#detail-next-runs li')].map((li) => li.title)")
        assert titles == weekly["nextRuns"] and titles[0] == weekly["nextRunAt"]

        # queues and live workers are shown; a queue is paused and resumed from its row (the detail closed)
        assert browser.find_elements(By.CSS_SELECTOR, '#queues tr[data-queue="default"]')
        assert len(browser.find_elements(By.CSS_SELECTOR, "#workers tbody tr")) == 1
        assert "running" in (text_of(browser, "#runner-state") or "")
        click(browser, "#detail-close")
        click(browser, '#queues tr[data-queue="default"] .queue-toggle')
        row = '#queues tr[data-queue="default"][data-paused="{}"]'
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row.format("true")), what="the queue paused")
        assert api.get("/queues").json()["data"][0]["paused"] is True
        click(browser, '#queues tr[data-queue="default"] .queue-toggle')
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row.format("false")), what="the queue resumed")
        overview = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(overview))
        click(browser, f'#jobs tr[data-job-id="{failing["id"]}"]')
        wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history tbody tr.run")) == 2,
                 what="the detail again")
        click(browser, "#history details summary")  # unfold a traceback
        # one auto-refresh (it reloads the detail, then stamps #updated): the unfolded traceback stays open
        browser.execute_script("document.getElementById('updated').textContent = ''")
        wait_for(browser, lambda d: d.find_element(By.ID, "updated").text, what="an auto-refresh")
        assert browser.execute_script("return document.querySelector('#history details').open") is True
        browser.execute_script("document.getElementById('detail').scrollTop = 0")
        detail = tmp_path / "job-detail.png"
        assert browser.save_screenshot(str(detail))
        for shot in (overview, detail):
            assert shot.stat().st_size > 10_000
            print(f"screenshot: {shot}")

        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
