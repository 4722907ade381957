"""The routes the dashboard added: ``GET /stats/throughput``, ``GET /schedules`` and ``GET /jobs?data=``."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from aiojobs_pg import App
from aiojobs_pg.testing import drain

from .test_jobs import create


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_throughput_counts_runs_per_minute_by_status(app: App, client: httpx.AsyncClient) -> None:
    for i in range(3):
        await create(client, handler="echo", data=i)
    await create(client, handler="boom", maxAttempts=1)
    await drain(app)
    # an old run, outside the hour: written as the history holds it (a completed one-off job's row)
    async with app.pool.acquire() as conn:
        await conn.execute(f"INSERT INTO {app.schema}.job_runs (job_id, attempt, status, started_at, completed_at) "
                           "VALUES (999999, 1, 'failed', now() - interval '2 hours', now() - interval '2 hours')")

    body = (await client.get("/stats/throughput")).json()
    minutes = body["data"]
    assert len(minutes) == 60
    times = [_parse(m["minute"]) for m in minutes]
    assert times == sorted(times) and all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(times))
    assert times[-1] == _parse(body["now"])
    assert abs(datetime.now(UTC) - times[-1]) < timedelta(minutes=2)
    assert sum(m["completed"] for m in minutes) == 3
    assert sum(m["failed"] for m in minutes) == 1  # the one two hours ago is left out
    assert all(set(m) == {"minute", "completed", "failed", "cancelled", "released"} for m in minutes)

    short = (await client.get("/stats/throughput?minutes=5")).json()["data"]
    assert len(short) == 5 and short[-1]["minute"] == minutes[-1]["minute"]


async def test_throughput_refuses_bad_minutes(client: httpx.AsyncClient) -> None:
    for query, message in (("minutes=0", "positive integer"), ("minutes=1441", "at most 1440"),
                           ("minutes=x", "positive integer"), ("window=5", "unknown query parameter")):
        response = await client.get(f"/stats/throughput?{query}")
        assert response.status_code == 422, query
        assert message in response.json()["message"], response.json()


async def test_schedules_lists_recurring_jobs_with_next_runs(client: httpx.AsyncClient) -> None:
    daily = await create(client, name="daily", schedule="0 9 * * *", timezone="Europe/Paris")
    hourly = await create(client, name="hourly", schedule="1h")
    await create(client, name="one-off")
    body = (await client.get("/schedules")).json()
    by_id = {job["id"]: job for job in body["data"]}
    assert set(by_id) == {daily["id"], hourly["id"]}
    due = [_parse(job["nextRunAt"]) for job in body["data"]]
    assert due == sorted(due)  # soonest first
    assert len(by_id[daily["id"]]["nextRuns"]) == 5
    assert by_id[daily["id"]]["nextRuns"][0] == daily["nextRunAt"]
    assert (await client.get("/schedules?x=1")).status_code == 422


async def _ids(client: httpx.AsyncClient, **params: str) -> list[int]:
    response = await client.get("/jobs", params=params)
    assert response.status_code == 200, response.text
    return [job["id"] for job in response.json()["data"]]


async def test_jobs_search_by_data_containment(app: App, client: httpx.AsyncClient) -> None:
    alice = await create(client, data={"user": 7, "plan": "pro", "tags": ["a", "b"]}, delay=3600)
    bob = await create(client, data={"user": 8, "plan": "pro"}, delay=3600)
    done = await create(client, data={"user": 7, "plan": "free"})
    await drain(app)  # done completes: its data is read from the history
    await create(client, data=[1, 2])  # data that is no object is never matched by one

    assert await _ids(client, data=json.dumps({"user": 7})) == [done["id"], alice["id"]]
    assert await _ids(client, data=json.dumps({"plan": "pro"})) == [bob["id"], alice["id"]]
    assert await _ids(client, data=json.dumps({"tags": ["b"]})) == [alice["id"]]
    assert await _ids(client, data=json.dumps({"user": 7}), status="completed") == [done["id"]]
    assert await _ids(client, data=json.dumps({"user": 9})) == []
    assert (await app.admin().list_jobs(data={"user": 8})).jobs[0].id == bob["id"]


async def test_jobs_search_by_data_refuses_what_is_no_json_object(client: httpx.AsyncClient) -> None:
    cases: list[tuple[str, str]] = [
        ("[1]", "must be a JSON object"), ('"x"', "must be a JSON object"), (" {}", "must be a JSON object"),
        ("{user: 7}", "is not valid JSON"), ("{} {}", "is not valid JSON"), ('{"a": NaN}', "is not valid JSON"),
        ('{"a": "\\u0000"}', "NUL"), ('{"a": 1e999}', "data"),
    ]
    for text, message in cases:
        response = await client.get("/jobs", params={"data": text})
        body: dict[str, Any] = response.json()
        assert response.status_code == 422, (text, body)
        assert body["field"] == "data" and message in body["message"], (text, body)
