"""The dashboard shows a queue's limits (docs/limits.md), in a real browser (skipped without one, as
tests/http/test_browser.py is)."""

from __future__ import annotations

from tests.http.conftest import LiveServer
from tests.http.test_browser import By, WebDriver, browser, pytestmark, text_of, wait_for

__all__ = ["browser", "pytestmark"]  # test_browser's fixture, and its skip without a browser


def test_the_dashboard_shows_a_queue_s_limits(browser: WebDriver, live_server: LiveServer) -> None:
    with live_server.client() as api:
        set_ = api.post("/queues/capped/settings", json={"concurrencyLimit": 3, "rateLimit": "10/1m"})
        assert set_.status_code == 200, set_.text
        browser.get(f"{live_server.url}/dashboard")
        if browser.find_elements(By.ID, "token"):  # not signed in yet in this browser
            token_input = browser.find_element(By.ID, "token")
            token_input.send_keys(live_server.token)
            token_input.submit()
        row = '#queues tr[data-queue="capped"][data-concurrency-limit="3"][data-rate-limit="10/1m"]'
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), what="the queue's limits shown")
        assert text_of(browser, f"{row} .badge.limits") == "≤3 at once · 10/1m"
        api.post("/queues/capped/settings", json={"concurrencyLimit": None, "rateLimit": None})
        badge = '#queues tr[data-queue="capped"] .badge.limits'
        wait_for(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, badge), what="the limits removed")
