"""The job endpoints: success and failure paths, through the in-process ASGI app."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from aiojobs_pg import App, next_run_times
from aiojobs_pg.http.openapi import openapi_document
from tests.helpers import eventually

ISO_UTC = "%Y-%m-%dT%H:%M:%S.%fZ"
JOB_FIELDS = {"id", "name", "handler", "data", "schedule", "queue", "priority", "status", "attempts", "maxAttempts",
              "lastRunAt", "nextRunAt", "lastError", "result", "createdAt", "updatedAt", "nextRuns", "noWorker",
              "progress", "progressMessage"}


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, ISO_UTC).replace(tzinfo=UTC)


async def create(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("handler", "echo")
    response = await client.post("/jobs", json=body)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    assert isinstance(job.pop("existing"), bool)  # the answer of a create (a dedup key's holder), not a job field
    return job


async def count_jobs(app: App) -> int:
    return len(await app.list_jobs(limit=1000))


async def wait_status(client: httpx.AsyncClient, job_id: int, status: str) -> dict[str, Any]:
    async def reached() -> bool:
        return (await client.get(f"/jobs/{job_id}")).json()["status"] == status

    await eventually(reached, timeout=15, message=f"job {job_id} never became {status}")
    job: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
    return job


# --- POST /jobs ---

async def test_create_returns_the_job_with_every_field(client: httpx.AsyncClient) -> None:
    run_at = datetime.now(UTC) + timedelta(hours=1)
    response = await client.post("/jobs", json={
        "name": "welcome mail", "handler": "echo", "data": {"to": "a@b.c", "n": [1, 2]}, "maxAttempts": 5,
        "queue": "mail", "priority": 7, "runAt": run_at.isoformat(), "dedupKey": "welcome-1", "timeout": "30s"})
    assert response.status_code == 201, response.text
    job = response.json()
    assert job.keys() >= JOB_FIELDS
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert (job["name"], job["handler"], job["data"], job["queue"], job["priority"], job["maxAttempts"]) == (
        "welcome mail", "echo", {"to": "a@b.c", "n": [1, 2]}, "mail", 7, 5)
    assert (job["status"], job["attempts"], job["timeout"], job["dedupKey"]) == ("pending", 0, 30.0, "welcome-1")
    assert abs(parse_time(job["nextRunAt"]) - run_at) < timedelta(milliseconds=1)
    for field in ("createdAt", "updatedAt"):
        parse_time(job[field])  # ISO 8601, UTC, with Z
    assert job["lastRunAt"] is None and job["lastError"] is None and job["result"] is None


async def test_create_with_schedule_delay_and_dedup(client: httpx.AsyncClient) -> None:
    recurring = await create(client, schedule="*/5 * * * *", timezone="Europe/Paris")
    assert (recurring["schedule"], recurring["timezone"]) == ("*/5 * * * *", "Europe/Paris")
    assert parse_time(recurring["nextRunAt"]).minute % 5 == 0
    deferred = await create(client, delay=120)
    assert parse_time(deferred["nextRunAt"]) > datetime.now(UTC) + timedelta(seconds=100)
    nulls = await create(client, name=None, runAt=None, delay=None, schedule=None, dedupKey=None, timeout=None)
    assert nulls["name"] is None and parse_time(nulls["nextRunAt"]) <= datetime.now(UTC) + timedelta(seconds=5)
    first = await create(client, dedupKey="k")
    again = await create(client, dedupKey="k", data={"other": True})
    assert again["id"] == first["id"]


@pytest.mark.parametrize(("body", "field", "fragment"), [
    ({"handler": "echo", "schedule": "61 * * * *"}, "schedule", "cron"),
    ({"handler": "echo", "schedule": "every tuesday"}, "schedule", ""),
    ({"handler": "no_such_handler"}, "handler", "unknown handler"),
    ({"data": {}}, "handler", "required"),
    ({"handler": ""}, "handler", "empty"),
    ({"handler": 12}, "handler", "string"),
    ({"handler": "echo", "maxAttempts": "3"}, "maxAttempts", "integer"),
    ({"handler": "echo", "maxAttempts": 0}, "maxAttempts", "between"),
    ({"handler": "echo", "maxAttempts": True}, "maxAttempts", "integer"),
    ({"handler": "echo", "maxAttempts": None}, "maxAttempts", "null"),
    ({"handler": "echo", "priority": 1.5}, "priority", "integer"),
    ({"handler": "echo", "priority": 2**40}, "priority", "between"),
    ({"handler": "echo", "queue": None}, "queue", "null"),
    ({"handler": "echo", "queue": ["a"]}, "queue", "string"),
    ({"handler": "echo", "queue": "q\u0000"}, "queue", "NUL"),
    ({"handler": "echo", "runAt": "tomorrow"}, "runAt", "ISO 8601"),
    ({"handler": "echo", "runAt": "2030-01-01T00:00:00"}, "runAt", "time zone"),
    ({"handler": "echo", "runAt": 1700000000}, "runAt", "string"),
    ({"handler": "echo", "runAt": "0001-01-01T00:00:00+05:00"}, "runAt", "range"),
    ({"handler": "echo", "delay": "soon"}, "delay", "duration"),
    ({"handler": "echo", "delay": -1}, "delay", "negative"),
    ({"handler": "echo", "delay": 5, "runAt": "2030-01-01T00:00:00Z"}, "delay", "not both"),
    ({"handler": "echo", "timeout": 0}, "timeout", "greater than zero"),
    ({"handler": "echo", "timezone": "Europe/Paris"}, "timezone", "schedule"),
    ({"handler": "echo", "schedule": "* * * * *", "timezone": "Mars/Olympus"}, "timezone", ""),
    ({"handler": "echo", "dedupKey": 5}, "dedupKey", "string"),
    ({"handler": "echo", "bogus": 1}, "bogus", "unknown field"),
    ({"handler": "echo", "data": "\ud800"}, "data", "surrogate"),
])
async def test_create_rejects_bad_input_with_422_naming_the_field(
        client: httpx.AsyncClient, app: App, body: dict[str, Any], field: str, fragment: str) -> None:
    # json.dumps escapes non-ASCII, so a lone surrogate travels as the JSON escape \ud800
    response = await client.post("/jobs", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "validation_error"
    assert error["field"] == field
    assert error["message"].startswith(f"{field}: ")
    assert fragment in error["message"]
    assert await count_jobs(app) == 0


@pytest.mark.parametrize(("content", "fragment"), [
    (b"{not json", "not valid JSON"),
    (b"", "required"),
    (b"[1, 2]", "JSON object"),
    (b'"echo"', "JSON object"),
    (b'{"handler": "echo", "data": NaN}', "not valid JSON"),
    (b"\xff\xfe{}", "not valid JSON"),
    (b"[" * 100_000, "nested too deeply"),
])
async def test_create_rejects_bad_json(client: httpx.AsyncClient, app: App, content: bytes, fragment: str) -> None:
    response = await client.post("/jobs", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "body"
    assert fragment in response.json()["message"]
    assert await count_jobs(app) == 0


async def test_bodies_over_one_mebibyte_are_refused_with_413(client: httpx.AsyncClient, app: App) -> None:
    big = {"handler": "echo", "data": "x" * (1024 * 1024)}
    response = await client.post("/jobs", json=big)
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"

    async def chunks() -> Any:  # no Content-Length: counted while reading
        yield b'{"handler": "echo", "data": "'
        for _ in range(17):
            yield b"y" * 65536
        yield b'"}'

    response = await client.post("/jobs", content=chunks())
    assert response.status_code == 413
    response = await client.put("/jobs/1", content=b"{}", headers={"Content-Length": str(2 * 1024 * 1024)})
    assert response.status_code == 413
    assert await count_jobs(app) == 0
    just_under = {"handler": "echo", "data": "z" * (1024 * 1024 - 100)}
    assert (await client.post("/jobs", json=just_under)).status_code == 201


# --- GET /jobs ---

async def test_list_paginates_by_cursor_and_filters(client: httpx.AsyncClient) -> None:
    ids = [(await create(client, queue="a" if i % 2 else "b", data=i))["id"] for i in range(7)]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/jobs", params=params)).json()
        seen += [j["id"] for j in page["data"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert seen == sorted(ids, reverse=True)
    assert pages == 3
    only_a = (await client.get("/jobs", params={"queue": "a"})).json()["data"]
    assert [j["id"] for j in only_a] == [i for i in reversed(ids) if (i - ids[0]) % 2]
    assert (await client.get("/jobs", params={"handler": "boom"})).json() == {"data": [], "nextCursor": None}
    assert len((await client.get("/jobs", params={"status": "pending"})).json()["data"]) == 7
    assert (await client.get("/jobs", params={"status": "failed"})).json()["data"] == []
    default = (await client.get("/jobs")).json()
    assert len(default["data"]) == 7 and default["nextCursor"] is None


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "done"}, "status"), ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"),
    ({"limit": "ten"}, "limit"), ({"limit": "-1"}, "limit"), ({"cursor": "abc"}, "cursor"),
    ({"cursor": "0"}, "cursor"), ({"cursor": "9" * 30}, "cursor"), ({"queue": "x" * 101}, "queue"),
    ({"page": "2"}, "page"),
])
async def test_list_rejects_bad_query(client: httpx.AsyncClient, params: dict[str, str], field: str) -> None:
    response = await client.get("/jobs", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize(("query", "field"), [
    ("queue=%FF", "queue"), ("handler=caf%C3", "handler"), ("status=%FFpending", "status"), ("limit=%FF", "limit"),
    ("cursor=%C0%AF", "cursor"), ("queue=a&cursor=%ED%A0%80", "cursor"),  # an encoded surrogate is not UTF-8
])
async def test_list_refuses_query_values_that_are_not_utf8(client: httpx.AsyncClient, query: str, field: str) -> None:
    await create(client)
    response = await client.get(f"/jobs?{query}")
    assert response.status_code == 422, response.text
    assert response.json() == {"error": "validation_error", "field": field,
                               "message": f"{field}: the query parameter's value is not valid UTF-8 once "
                                          "percent-decoded"}


async def test_list_refuses_bad_query_names_and_repeats(client: httpx.AsyncClient) -> None:
    bad_name = await client.get("/jobs?qu%FFeue=a")
    assert bad_name.status_code == 422 and bad_name.json()["field"] == "qu\ufffdeue"
    assert "name is not valid UTF-8" in bad_name.json()["message"]
    twice = await client.get("/jobs?queue=a&queue=b")
    assert twice.status_code == 422 and twice.json()["field"] == "queue" and "more than once" in twice.json()["message"]
    # what is valid still works: + and %20 are spaces, UTF-8 is decoded, an empty pair is skipped
    await create(client, queue="caf\u00e9 au lait")
    found = await client.get("/jobs?queue=caf%C3%A9+au%20lait&&limit=5")
    assert found.status_code == 200 and [j["queue"] for j in found.json()["data"]] == ["caf\u00e9 au lait"]


# --- methods: a 405 lists every method of the path ---

_METHOD_ORDER = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def _documented_methods() -> list[tuple[str, list[str]]]:
    paths = openapi_document()["paths"]
    return [(path, [m for m in _METHOD_ORDER if m.lower() in ops or (m == "HEAD" and "get" in ops)])
            for path, ops in paths.items()]


@pytest.mark.parametrize(("path", "allowed"), _documented_methods())
async def test_405_lists_every_method_the_path_serves(client: httpx.AsyncClient, path: str, allowed: list[str]) -> None:
    url = path.replace("{id}", "1")
    for method in ["OPTIONS", *_METHOD_ORDER]:
        if method in allowed:
            continue
        response = await client.request(method, url)
        assert response.status_code == 405, (method, url, response.text)
        assert response.headers["allow"] == ", ".join(allowed), (method, url)
        if method != "HEAD":
            assert response.json()["error"] == "method_not_allowed"


async def test_options_on_jobs_lists_get_and_post(client: httpx.AsyncClient) -> None:
    # the issue: OPTIONS /jobs said "Allow: GET, HEAD", and /jobs/{id} left out PUT and DELETE
    assert (await client.options("/jobs")).headers["allow"] == "GET, HEAD, POST"
    assert (await client.options("/jobs/1")).headers["allow"] == "GET, HEAD, PUT, DELETE"


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/jobs/runner", "GET, HEAD"), ("DELETE", "/jobs/runner", "GET, HEAD"),
    ("POST", "/jobs/runner", "GET, HEAD"), ("GET", "/jobs/runner/start", "POST"), ("PUT", "/jobs/runner/start", "POST"),
    ("DELETE", "/jobs/runner/stop", "POST"), ("GET", "/jobs/runner/stop", "POST"),
])
async def test_runner_paths_are_not_job_ids(client: httpx.AsyncClient, method: str, path: str, allowed: str) -> None:
    # PUT /jobs/runner fell through to /jobs/{job_id}: 404 "job 'runner' not found"
    await create(client)
    response = await client.request(method, path, json={"priority": 1} if method in ("PUT", "POST") else None)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allowed
    assert response.json()["error"] == "method_not_allowed"


# --- GET / PUT / DELETE /jobs/{id} ---

@pytest.mark.parametrize("path", ["/jobs/987654321", "/jobs/0", "/jobs/abc", "/jobs/-1", "/jobs/99999999999999999999",
                                  "/jobs/1.5"])
async def test_unknown_ids_are_404_everywhere(client: httpx.AsyncClient, path: str) -> None:
    for method, suffix in [("GET", ""), ("PUT", ""), ("DELETE", ""), ("GET", "/history"), ("POST", "/trigger"),
                           ("POST", "/cancel"), ("POST", "/retry")]:
        body = {"priority": 1} if method == "PUT" else None
        response = await client.request(method, path + suffix, json=body)
        assert response.status_code == 404, (method, path + suffix, response.text)
        assert response.json()["error"] == "not_found"


async def test_get_returns_the_job(client: httpx.AsyncClient) -> None:
    job = await create(client, data={"x": 1})
    response = await client.get(f"/jobs/{job['id']}")
    assert response.status_code == 200
    assert response.json() == job


async def test_update_changes_only_the_given_fields(client: httpx.AsyncClient) -> None:
    job = await create(client, name="before", data={"v": 1}, priority=1, maxAttempts=2)
    run_at = "2031-02-03T04:05:06Z"
    response = await client.put(f"/jobs/{job['id']}", json={"priority": 9, "maxAttempts": 4, "data": {"v": 2},
                                                            "runAt": run_at})
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["priority"], updated["maxAttempts"], updated["data"], updated["name"]) == (9, 4, {"v": 2},
                                                                                               "before")
    assert updated["nextRunAt"] == "2031-02-03T04:05:06.000000Z"
    renamed = (await client.put(f"/jobs/{job['id']}", json={"name": None, "schedule": "10m"})).json()
    assert renamed["name"] is None and renamed["schedule"] == "10m"
    one_off = (await client.put(f"/jobs/{job['id']}", json={"schedule": None})).json()
    assert one_off["schedule"] is None
    unchanged = (await client.put(f"/jobs/{job['id']}", json={})).json()
    assert {k: v for k, v in unchanged.items() if k != "updatedAt"} == {
        k: v for k, v in one_off.items() if k != "updatedAt"}


@pytest.mark.parametrize(("body", "field"), [
    ({"schedule": "99 * * * *"}, "schedule"), ({"maxAttempts": -1}, "maxAttempts"), ({"priority": "high"}, "priority"),
    ({"runAt": None}, "runAt"), ({"runAt": "2030-13-01T00:00:00Z"}, "runAt"), ({"handler": "boom"}, "handler"),
    ({"status": "completed"}, "status"), ({"queue": ""}, "queue"), ({"name": 5}, "name"),
])
async def test_update_rejects_bad_input_and_writes_nothing(
        client: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    job = await create(client, priority=3)
    response = await client.put(f"/jobs/{job['id']}", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert (await client.get(f"/jobs/{job['id']}")).json() == job


async def test_update_rejects_bad_json(client: httpx.AsyncClient) -> None:
    job = await create(client)
    response = await client.put(f"/jobs/{job['id']}", content=b"{oops")
    assert response.status_code == 422
    assert response.json()["field"] == "body"


async def test_delete_removes_the_job_and_its_history(client: httpx.AsyncClient) -> None:
    job = await create(client)
    response = await client.delete(f"/jobs/{job['id']}")
    assert response.status_code == 204 and response.content == b""
    assert (await client.get(f"/jobs/{job['id']}")).status_code == 404
    assert (await client.get(f"/jobs/{job['id']}/history")).status_code == 404
    assert (await client.delete(f"/jobs/{job['id']}")).status_code == 404


# --- nextRuns ---

def _gaps(times: list[datetime]) -> set[timedelta]:
    return {b - a for a, b in itertools.pairwise(times)}


async def test_next_runs_of_recurring_and_one_off_jobs(client: httpx.AsyncClient) -> None:
    weekly = await create(client, schedule="0 9 * * MON", timezone="Europe/Paris")
    runs = [parse_time(t) for t in weekly["nextRuns"]]
    assert len(runs) == 5 and weekly["nextRuns"][0] == weekly["nextRunAt"]
    assert _gaps(runs) <= {timedelta(days=7), timedelta(days=7, hours=1), timedelta(days=7, hours=-1)}
    assert runs[1:] == next_run_times("0 9 * * MON", 4, timezone="Europe/Paris", after=runs[0])
    one_off = await create(client, delay="1h")
    assert one_off["nextRuns"] == []
    listed = {j["id"]: j["nextRuns"] for j in (await client.get("/jobs")).json()["data"]}
    assert listed == {weekly["id"]: weekly["nextRuns"], one_off["id"]: []}
    # a schedule given, changed or removed by PUT shows at once
    every_ten = (await client.put(f"/jobs/{one_off['id']}", json={"schedule": "10m"})).json()
    assert len(every_ten["nextRuns"]) == 5 and _gaps([parse_time(t) for t in every_ten["nextRuns"]]) == {
        timedelta(minutes=10)}
    assert (await client.put(f"/jobs/{one_off['id']}", json={"schedule": None})).json()["nextRuns"] == []
    # a cancelled recurring job does not run again by itself
    assert (await client.post(f"/jobs/{weekly['id']}/cancel")).json()["nextRuns"] == []


async def test_a_page_of_many_recurring_jobs_has_their_next_runs(client: httpx.AsyncClient) -> None:
    ids = [(await create(client, schedule=f"{minute} * * * *"))["id"] for minute in range(30)]  # rendered in a thread
    page = (await client.get("/jobs")).json()["data"]
    assert [j["id"] for j in page] == ids[::-1]
    for job in page:
        minute = int(job["schedule"].split()[0])
        assert [parse_time(t).minute for t in job["nextRuns"]] == [minute] * 5


async def test_next_runs_of_a_due_job_start_now_and_stop_at_year_9999(client: httpx.AsyncClient) -> None:
    due = await create(client, schedule="1h", runAt="2020-01-01T00:00:00Z")
    runs = [parse_time(t) for t in due["nextRuns"]]
    # due since 2020: it runs at once, then on the hourly ticks after now (as `schedules list` shows it)
    assert due["nextRuns"][0] == "2020-01-01T00:00:00.000000Z"
    assert datetime.now(UTC) < runs[1] <= datetime.now(UTC) + timedelta(hours=1)
    assert _gaps(runs[1:]) == {timedelta(hours=1)}
    last = await client.put(f"/jobs/{due['id']}", json={"schedule": "3660d", "runAt": "9999-12-30T00:00:00Z"})
    assert last.status_code == 200, last.text  # the ticks after it are past year 9999: only nextRunAt
    assert last.json()["nextRuns"] == ["9999-12-30T00:00:00.000000Z"]


# --- actions and history, with a worker ---

async def test_trigger_cancel_retry_and_history(client: httpx.AsyncClient) -> None:
    deferred = await create(client, delay="1h")
    triggered = (await client.post(f"/jobs/{deferred['id']}/trigger")).json()
    assert parse_time(triggered["nextRunAt"]) < datetime.now(UTC) + timedelta(seconds=5)
    cancelled = await client.post(f"/jobs/{deferred['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = await client.post(f"/jobs/{deferred['id']}/cancel")
    assert again.status_code == 409
    assert again.json() == {"error": "conflict", "message": f"cannot cancel job {deferred['id']}: it is cancelled",
                            "status": "cancelled"}

    failing = await create(client, handler="boom", data="kaput", maxAttempts=1)
    assert (await client.post(f"/jobs/{failing['id']}/retry")).status_code == 409  # pending: nothing to retry
    assert (await client.post("/jobs/runner/start", json={"concurrency": 2})).status_code == 201
    failed = await wait_status(client, failing["id"], "failed")
    assert "RuntimeError: boom: 'kaput'" in failed["lastError"]
    retried = await client.post(f"/jobs/{failing['id']}/retry")
    assert retried.status_code == 200 and retried.json()["attempts"] == 0
    await wait_status(client, failing["id"], "failed")

    async def two_runs() -> bool:
        return len((await client.get(f"/jobs/{failing['id']}/history")).json()["data"]) == 2

    await eventually(two_runs, timeout=10)
    runs = (await client.get(f"/jobs/{failing['id']}/history")).json()["data"]
    assert set(runs[0]) >= {"id", "jobId", "attempt", "status", "startedAt", "completedAt", "duration", "error",
                            "result"}
    for run in runs:
        assert (run["jobId"], run["attempt"], run["status"]) == (failing["id"], 1, "failed")
        assert run["error"].startswith("Traceback") and "RuntimeError: boom: 'kaput'" in run["error"]
        assert run["duration"] >= 0 and parse_time(run["completedAt"]) >= parse_time(run["startedAt"])

    ok = await create(client, data={"answer": 42})
    done = await wait_status(client, ok["id"], "completed")
    assert done["result"] == {"answer": 42} and done["lastRunAt"] is not None
    history = (await client.get(f"/jobs/{ok['id']}/history")).json()["data"]
    assert [(r["status"], r["result"], r["error"]) for r in history] == [("completed", {"answer": 42}, None)]
    assert (await client.post(f"/jobs/{ok['id']}/cancel")).status_code == 409
    # A completed job stays as it ran (it is history now); trigger runs it again under its id.
    changed = await client.put(f"/jobs/{ok['id']}", json={"priority": 5})
    assert changed.status_code == 409 and changed.json()["status"] == "completed"
    assert [j["id"] for j in (await client.get("/jobs?status=completed")).json()["data"]] == [ok["id"]]
    rerun = await client.post(f"/jobs/{ok['id']}/trigger")
    assert rerun.status_code == 200 and rerun.json()["status"] == "pending" and rerun.json()["id"] == ok["id"]
    assert (await wait_status(client, ok["id"], "completed"))["attempts"] == 1
    assert len((await client.get(f"/jobs/{ok['id']}/history")).json()["data"]) == 2


async def test_cancel_a_running_job(client: httpx.AsyncClient) -> None:
    job = await create(client, handler="slow", data=30)
    await client.post("/jobs/runner/start")
    await wait_status(client, job["id"], "running")
    assert (await client.post(f"/jobs/{job['id']}/trigger")).status_code == 409  # running: cannot trigger
    response = await client.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


async def test_a_pending_job_no_live_worker_serves_is_flagged(client: httpx.AsyncClient, app: App) -> None:
    app.validate_handlers = False

    @app.handler()
    async def served(data: None) -> None:
        return None

    orphan = await create(client, handler="orphan")
    assert (await client.get(f"/jobs/{orphan['id']}")).json()["noWorker"] is True  # no worker at all yet
    async with app.worker() as worker:
        await eventually(lambda: worker.signals.counts["renew"] > 0)
        listed = {j["id"]: j for j in (await client.get("/jobs")).json()["data"]}
        assert listed[orphan["id"]]["noWorker"] is True
        runner = (await client.get("/jobs/runner")).json()
        [me] = [w for w in runner["liveWorkers"] if w["id"] == worker.id]
        assert "served" in me["handlers"] and "orphan" not in me["handlers"] and me["alive"] is True
        done = await wait_status(client, (await create(client, handler="served"))["id"], "completed")
        assert done["noWorker"] is False  # only a pending job waits for a worker


async def test_queues_pause_and_resume_and_bulk_actions(client: httpx.AsyncClient, app: App) -> None:
    paused = await client.post("/queues/mail%2Fout/pause")
    assert paused.status_code == 200 and paused.json() == {"queue": "mail/out", "paused": True}
    assert await app.admin().paused_queues() == ["mail/out"]
    assert (await client.post("/queues/mail%2Fout/resume")).json() == {"queue": "mail/out", "paused": False}
    assert await app.admin().paused_queues() == []

    for _ in range(3):
        await create(client, queue="bulk")
    cancelled = await client.post("/bulk/cancel-pending", json={"queue": "bulk", "handler": "echo"})
    assert cancelled.status_code == 200 and cancelled.json() == {"count": 3}
    assert (await client.post("/bulk/retry-failed")).json() == {"count": 0}
    deleted = await client.post("/bulk/delete-finished", json={"olderThan": "0s", "queue": "bulk"})
    assert deleted.json() == {"count": 3}
    missing = await client.post("/bulk/delete-finished", json={"queue": "bulk"})
    assert missing.status_code == 422 and missing.json()["field"] == "olderThan"
    unknown = await client.post("/bulk/cancel-pending", json={"status": "failed"})
    assert unknown.status_code == 422 and unknown.json()["field"] == "status"
