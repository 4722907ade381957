"""``GET /jobs/{id}/wait``: the job once it finished (App.wait), through the in-process ASGI app."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from aiojobs_pg import App
from aiojobs_pg.http import serialize as ser
from aiojobs_pg.http.openapi import openapi_document


async def test_a_wait_answers_with_the_result_once_the_job_completed(app: App, client: httpx.AsyncClient) -> None:
    job = (await client.post("/jobs", json={"handler": "slow", "data": 0.3})).json()
    waiting = asyncio.create_task(client.get(f"/jobs/{job['id']}/wait", params={"timeout": "20"}))
    async with app.worker():
        response = await asyncio.wait_for(waiting, 20)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["status"], body["result"]) == (job["id"], "completed", "slept")


async def test_a_finished_job_answers_at_once(app: App, client: httpx.AsyncClient) -> None:
    job = (await client.post("/jobs", json={"handler": "echo", "data": {"a": [1]}})).json()
    await app.run_worker(burst=True, handle_signals=False)
    started = time.monotonic()
    response = await client.get(f"/jobs/{job['id']}/wait")  # the default timeout (30 s) is not waited
    assert response.status_code == 200 and response.json()["result"] == {"a": [1]}
    assert time.monotonic() - started < 5


async def test_a_failed_or_cancelled_job_is_a_409_naming_it(app: App, client: httpx.AsyncClient) -> None:
    failing = (await client.post("/jobs", json={"handler": "boom", "data": "x", "maxAttempts": 1})).json()
    await app.run_worker(burst=True, handle_signals=False)
    response = await client.get(f"/jobs/{failing['id']}/wait", params={"timeout": 5})
    assert response.status_code == 409
    body = response.json()
    assert (body["error"], body["status"], body["job"]["id"], body["job"]["status"]) == (
        "job_failed", "failed", failing["id"], "failed")
    assert "RuntimeError: boom" in body["message"] and "boom" in body["job"]["lastError"]

    parked = (await client.post("/jobs", json={"handler": "echo", "delay": 3600})).json()
    waiting = asyncio.create_task(client.get(f"/jobs/{parked['id']}/wait", params={"timeout": 20}))
    assert (await client.post(f"/jobs/{parked['id']}/cancel")).status_code == 200
    response = await asyncio.wait_for(waiting, 20)
    assert response.status_code == 409
    assert (response.json()["error"], response.json()["job"]["status"]) == ("job_cancelled", "cancelled")


async def test_a_timeout_answers_202_with_the_job_as_it_stands(client: httpx.AsyncClient) -> None:
    job = (await client.post("/jobs", json={"handler": "echo", "delay": 3600})).json()
    started = time.monotonic()
    response = await client.get(f"/jobs/{job['id']}/wait", params={"timeout": "0.3"})
    assert response.status_code == 202
    assert (response.json()["id"], response.json()["status"]) == (job["id"], "pending")
    assert 0.3 <= time.monotonic() - started < 5


async def test_unknown_recurring_and_bad_timeouts(client: httpx.AsyncClient) -> None:
    assert (await client.get("/jobs/999999/wait", params={"timeout": 1})).status_code == 404
    recurring = (await client.post("/jobs", json={"handler": "echo", "schedule": "1h"})).json()
    response = await client.get(f"/jobs/{recurring['id']}/wait", params={"timeout": 5})
    assert response.status_code == 409 and response.json()["error"] == "conflict"
    assert "recurring" in response.json()["message"]
    for bad in ("0", "301", "-1", "abc", "1e9", "", "nan", "inf", "5s"):
        response = await client.get(f"/jobs/{recurring['id']}/wait", params={"timeout": bad})
        assert response.status_code == 422, bad
        assert response.json()["field"] == "timeout"
    response = await client.get(f"/jobs/{recurring['id']}/wait", params={"seconds": "5"})
    assert (response.status_code, response.json()["field"]) == (422, "seconds")


def test_the_document_states_the_route_and_its_cap() -> None:
    op = openapi_document()["paths"]["/jobs/{id}/wait"]["get"]
    assert {"200", "202", "404", "409", "422"} <= op["responses"].keys()
    [timeout] = [p for p in op["parameters"] if p["name"] == "timeout"]
    assert (timeout["schema"]["minimum"], timeout["schema"]["maximum"]) == (ser.MIN_WAIT, ser.MAX_WAIT) == (
        0.001, 300.0)


@pytest.mark.parametrize("text", ["0.001", "300", "300.0", "1e-3", "2.5", "1E2"])
def test_a_timeout_in_range_is_read_as_seconds(text: str) -> None:
    assert ser.wait_timeout({"timeout": text}) == float(text)
    assert ser.wait_timeout({}) == ser.DEFAULT_WAIT
