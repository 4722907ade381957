"""The dashboard's views beside Bull Board, River UI and Oban Web, in headless Chromium.

Tab counts, bulk actions from a selection and per queue, search by id, handler and
data, the schedules view and the last hour's chart. Skipped, as test_browser.py is,
without a browser. With ``AIOJOBS_PG_DOCS_SCREENSHOT=1`` it also writes the
screenshot of ``docs/http.md`` (``docs/dashboard.png``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http.conftest import LiveServer
from tests.http.test_browser import CHROMEDRIVER, CHROMIUM, click, status_in_page, text_of, wait_for

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="no browser (see test_browser.py)")
pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402

from tests.http.test_browser import browser  # noqa: E402, F401  (the fixture)

DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"


def post(api: httpx.Client, **body: Any) -> int:
    response = api.post("/jobs", json=body)
    assert response.status_code == 201, response.text
    job_id: int = response.json()["id"]
    return job_id


def shown_ids(driver: WebDriver) -> list[int]:
    ids: list[int] = driver.execute_script(
        "return [...document.querySelectorAll('#jobs tr.job-row')].map((r) => Number(r.dataset.jobId))")
    return ids


def tab_count(driver: WebDriver, status: str) -> str | None:
    return text_of(driver, f'#status-tabs [data-count="{status}"]')


def accept_confirm(driver: WebDriver) -> str:
    alert = wait_for(driver, expected_conditions.alert_is_present(), what="the confirm dialog")
    text: str = alert.text
    alert.accept()
    return text


def search(driver: WebDriver, **fields: str) -> None:
    """Fill the search form (the fields not given emptied) and submit it."""
    for name in ("id", "queue", "handler", "data"):
        box = driver.find_element(By.ID, f"filter-{name}")
        box.clear()
        box.send_keys(fields.get(name, ""))
    click(driver, "#filters button[type=submit]")


def test_dashboard_views(browser: WebDriver, live_server: LiveServer, tmp_path: Path) -> None:  # noqa: F811
    with live_server.client() as api:
        done = [post(api, handler="echo", data={"n": i}) for i in range(3)]
        failed = [post(api, handler="boom", maxAttempts=1, data={"n": i}) for i in range(2)]
        later = [post(api, handler="echo", data={"user": 40 + i}, delay=3600, queue="mail") for i in range(3)]
        weekly = api.post("/jobs", json={"handler": "echo", "name": "weekly report", "schedule": "0 9 * * MON",
                                         "timezone": "Europe/Paris", "queue": "cron"}).json()

        # the chart is fetched at load (then every 30 s): let these runs be recorded first
        wait_for(browser, lambda d: [api.get(f"/jobs/{i}").json()["status"] for i in done + failed]
                 == ["completed"] * 3 + ["failed"] * 2, what="the first runs")
        browser.get(f"{live_server.url}/dashboard")
        token_input = wait_for(browser, lambda d: d.find_element(By.ID, "token"), what="the sign-in form")
        token_input.send_keys(live_server.token)
        token_input.submit()
        wait_for(browser, lambda d: d.execute_script("return document.body.dataset.loaded === 'true'"),
                 what="the dashboard loaded")
        browser.get_log("browser")  # drop the sign-in page's expected 401

        # 1. the status tabs count every queue's jobs, as GET /queues does
        wait_for(browser, lambda d: tab_count(d, "failed") == "2" and tab_count(d, "completed") == "3",
                 what="the tab counts")
        queues = api.get("/queues").json()["data"]
        assert tab_count(browser, "pending") == str(sum(q["counts"]["pending"] for q in queues)) == "4"
        assert tab_count(browser, "all") == str(sum(q["total"] for q in queues))

        # 3. search: by data (containment), by id, by handler
        search(browser, data='{"user": 41}')
        wait_for(browser, lambda d: shown_ids(d) == [later[1]], what="the data search")
        search(browser, id=str(failed[0]))
        wait_for(browser, lambda d: shown_ids(d) == [failed[0]], what="the id search")
        search(browser, handler="boom")
        wait_for(browser, lambda d: shown_ids(d) == failed[::-1], what="the handler search")
        search(browser, data="[1]")  # not an object: refused before any request
        wait_for(browser, lambda d: "data: a JSON object" in (text_of(d, "#toast") or ""), what="the data hint")
        search(browser)

        # 2. bulk from a selection: tick two pending jobs, cancel them
        wait_for(browser, lambda d: set(later) <= set(shown_ids(d)), what="every job listed")
        for job_id in later[:2]:
            click(browser, f'#jobs tr[data-job-id="{job_id}"] .job-select')
        wait_for(browser, lambda d: text_of(d, "#bulk-count") == "2 selected", what="two ticked")
        click(browser, '#bulk [data-bulk="cancel"]')
        wait_for(browser, lambda d: "2 jobs cancelled" in (text_of(d, "#toast") or ""), what="the bulk cancel toast")
        assert [api.get(f"/jobs/{i}").json()["status"] for i in later] == ["cancelled", "cancelled", "pending"]
        assert text_of(browser, "#bulk-count") == "0 selected"

        # ... and select-all on the failed tab, then retry: each is run again (and fails again)
        click(browser, '#status-tabs [data-status="failed"]')
        wait_for(browser, lambda d: sorted(shown_ids(d)) == failed, what="the failed tab")
        click(browser, "#select-all")
        wait_for(browser, lambda d: text_of(d, "#bulk-count") == "2 selected", what="all ticked")
        click(browser, '#bulk [data-bulk="retry"]')
        wait_for(browser, lambda d: "2 jobs retried" in (text_of(d, "#toast") or ""), what="the bulk retry toast")
        wait_for(browser, lambda d: all(len(api.get(f"/jobs/{i}/history").json()["data"]) == 2 for i in failed),
                 what="a second run of each")
        click(browser, '#status-tabs [data-status=""]')

        # ... and a whole queue's pending jobs, after a confirm that says how many
        click(browser, '#queues tr[data-queue="mail"] .queue-cancel-pending')
        assert accept_confirm(browser) == "Cancel every pending job of queue mail (1 now)?"
        wait_for(browser, lambda d: "Cancelled 1 job of mail" in (text_of(d, "#toast") or ""), what="the queue toast")
        assert api.get(f"/jobs/{later[2]}").json()["status"] == "cancelled"
        wait_for(browser, lambda d: status_in_page(d, later[2]) == "cancelled", what="the list refreshed")

        # 4. the schedules view: the recurring job and its next five runs
        row = f'#schedules tr[data-job-id="{weekly["id"]}"]'
        wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, f"{row} li")) == 5, what="the schedules")
        titles = browser.execute_script(f"return [...document.querySelectorAll('{row} li')].map((li) => li.title)")
        assert titles == weekly["nextRuns"]
        assert text_of(browser, f"{row} td.label") == "weekly report (echo)"
        assert len(browser.find_elements(By.CSS_SELECTOR, "#schedules tbody tr")) == 1

        # 5. the last hour's chart: a bar group per minute, holding the runs the history recorded
        wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#throughput svg g.minute")) == 60,
                 what="the chart")
        counts = browser.execute_script(
            "return [...document.querySelectorAll('#throughput g.minute')].reduce((n, g) =>"
            " [n[0] + Number(g.dataset.completed), n[1] + Number(g.dataset.failed)], [0, 0])")
        assert counts[0] >= len(done) and counts[1] >= len(failed)  # what ran by the chart's last fetch
        assert browser.find_elements(By.CSS_SELECTOR, "#throughput rect.bar.completed[height]")

        shot = tmp_path / "dashboard.png"
        browser.execute_script("window.scrollTo(0, 0)")
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        if os.environ.get("AIOJOBS_PG_DOCS_SCREENSHOT") == "1":
            DOCS_SHOT.write_bytes(shot.read_bytes())
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
