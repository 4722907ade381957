"""Runner, queues, health, OpenAPI document, and mounting inside another ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from aiojobs_pg import App
from aiojobs_pg.http import JobsApi, create_asgi_app
from aiojobs_pg.http.openapi import openapi_document
from tests.helpers import eventually
from tests.http.conftest import ADMIN_TOKEN, BASE, bearer, in_own_task
from tests.http.serve_app import register_handlers


async def runner_state(client: httpx.AsyncClient) -> str:
    state: str = (await client.get("/jobs/runner")).json()["state"]
    return state


async def test_runner_start_status_stop(client: httpx.AsyncClient, app: App) -> None:
    idle = (await client.get("/jobs/runner")).json()
    assert idle == {"running": False, "state": "stopped", "workers": [], "liveWorkers": [], "lastError": None}

    started = await client.post("/jobs/runner/start", json={"concurrency": 3, "queues": ["default", "mail"]})
    assert started.status_code == 201, started.text
    body = started.json()
    assert body["running"] is True and body["state"] == "running"
    [local] = body["workers"]
    assert (local["concurrency"], local["queues"], local["state"]) == (3, ["default", "mail"], "running")
    [live] = body["liveWorkers"]
    assert live["id"] == local["id"] and live["concurrency"] == 3 and live["queues"] == ["default", "mail"]
    assert live["heartbeatAt"] and live["hostname"] and live["pid"] > 0

    again = await client.post("/jobs/runner/start")
    assert again.status_code == 409 and "already running" in again.json()["message"]

    job = (await client.post("/jobs", json={"handler": "echo", "queue": "mail", "data": 1})).json()

    async def done() -> bool:
        return (await client.get(f"/jobs/{job['id']}")).json()["status"] == "completed"

    await eventually(done, timeout=10)

    stopped = await client.post("/jobs/runner/stop")
    assert stopped.status_code == 202
    assert stopped.json()["state"] in ("stopping", "stopped")

    async def is_stopped() -> bool:
        return await runner_state(client) == "stopped"

    await eventually(is_stopped, timeout=10)
    final = (await client.get("/jobs/runner")).json()
    assert final["workers"] == [] and final["liveWorkers"] == [] and final["running"] is False
    assert (await client.post("/jobs/runner/stop")).status_code == 409
    assert (await client.post("/jobs/runner/start", content=b"")).status_code == 201  # the body is optional


@pytest.mark.parametrize(("body", "field"), [
    ({"concurrency": 0}, "concurrency"), ({"concurrency": "4"}, "concurrency"), ({"queues": []}, "queues"),
    ({"queues": "default"}, "queues"), ({"queues": [""]}, "queues"), ({"queues": [1]}, "queues"),
    ({"queues": None}, "queues"), ({"threads": 2}, "threads"), ({"queues": ["q"] * 51}, "queues"),
])
async def test_runner_start_rejects_bad_input(client: httpx.AsyncClient, body: dict[str, object], field: str) -> None:
    response = await client.post("/jobs/runner/start", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert await runner_state(client) == "stopped"


async def test_runner_needs_the_lifespan(app: App) -> None:
    register_handlers(app)
    asgi = create_asgi_app(app, tokens=[ADMIN_TOKEN])  # lifespan never entered
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=BASE, headers=bearer()) as c:
        response = await c.post("/jobs/runner/start")
        assert response.status_code == 503 and "lifespan" in response.json()["message"]
        assert (await c.get("/jobs")).status_code == 200  # the rest works on the open App


async def test_queues_counts_and_oldest_due(client: httpx.AsyncClient, app: App) -> None:
    assert (await client.get("/queues")).json() == {"data": [], "completedFrom": "counters"}
    for queue in ("mail", "mail", "sms"):
        await app.enqueue("echo", queue=queue)
    await app.enqueue("echo", queue="sms", delay="1h")
    cancelled = await app.enqueue("echo", queue="sms")
    await app.cancel(cancelled.id)
    before = datetime.now(UTC)
    data = {q["queue"]: q for q in (await client.get("/queues")).json()["data"]}
    assert set(data) == {"mail", "sms"}
    assert data["mail"]["counts"] == {"waiting": 0, "pending": 2, "running": 0, "completed": 0, "failed": 0,
                                      "cancelled": 0}
    assert data["mail"]["total"] == 2
    assert data["sms"]["counts"]["pending"] == 2 and data["sms"]["counts"]["cancelled"] == 1
    assert data["sms"]["total"] == 3
    for q in data.values():
        assert q["oldestPendingAt"] is not None
        assert 0 <= q["oldestPendingAgeSeconds"] < 30
        assert datetime.fromisoformat(q["oldestPendingAt"]) <= before
    # No worker runs here: every pending job waits for one. A paused queue shows, even without jobs.
    assert data["mail"]["noWorker"] == {"echo": 2} and data["sms"]["noWorker"] == {"echo": 2}
    await client.post("/queues/idle/pause")
    data = {q["queue"]: q for q in (await client.get("/queues")).json()["data"]}
    assert [(q, d["paused"]) for q, d in data.items()] == [("idle", True), ("mail", False), ("sms", False)]


async def test_health_database_and_listener(client: httpx.AsyncClient, anon: httpx.AsyncClient, app: App) -> None:
    response = await anon.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": True, "listener": None}
    await client.post("/jobs/runner/start")

    async def listening() -> bool:
        return (await anon.get("/health")).json()["listener"] is True

    await eventually(listening, timeout=10)
    worker = client._transport.app.runner.worker  # type: ignore[attr-defined]
    worker.notifier.connected = False  # as while the listener reconnects
    down = await anon.get("/health")
    assert down.status_code == 503 and down.json()["listener"] is False and down.json()["status"] == "unavailable"
    worker.notifier.connected = True


async def test_health_without_database(pg_dsn: str, schema_name: str) -> None:
    closed = App(pg_dsn, schema=schema_name)  # never opened: no pool
    asgi = create_asgi_app(closed, tokens=[ADMIN_TOKEN])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=BASE, headers=bearer()) as c:
        response = await c.get("/health")
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable", "database": False, "listener": None}
        jobs = await c.get("/jobs")
        assert jobs.status_code == 503 and jobs.json()["error"] == "unavailable"
    async with App(pg_dsn, schema=schema_name, auto_migrate=False) as unmigrated:  # the tables are missing
        asgi = create_asgi_app(unmigrated, tokens=[ADMIN_TOKEN])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=BASE, headers=bearer()) as c:
            assert (await c.get("/health")).json()["database"] is False
            for method, path in (("GET", "/jobs"), ("GET", "/jobs/1"), ("GET", "/queues"), ("POST", "/jobs/1/retry")):
                response = await c.request(method, path)
                assert response.status_code == 503, (method, path)
                assert response.json() == {"error": "unavailable", "message": "the database is unavailable"}
    unreachable = App("postgresql://nobody@127.0.0.1:1/none", schema=schema_name)
    asgi = create_asgi_app(unreachable, tokens=[ADMIN_TOKEN])
    with pytest.raises(OSError):
        async with asgi.lifespan():
            pass


async def test_lifespan_opens_and_closes_the_app(pg_dsn: str, schema_name: str, app: App) -> None:
    fresh = App(pg_dsn, schema=app.schema)
    asgi = create_asgi_app(fresh, tokens=[ADMIN_TOKEN], with_worker=True, concurrency=2)
    async with in_own_task(asgi.lifespan()):
        assert fresh.pool is not None
        assert asgi.runner.state == "running"
        await fresh.enqueue("noop")  # no handlers registered: any name is accepted
    assert fresh._pool is None
    assert asgi.runner.state == "stopped"
    # an App opened by its owner stays open
    async with in_own_task(create_asgi_app(app, tokens=[ADMIN_TOKEN]).lifespan()):
        pass
    assert await app.list_jobs() != []


async def test_openapi_document_lists_every_route(client: httpx.AsyncClient, api: JobsApi) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.") and "servers" not in doc
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = set()
    for route in api.routes:
        assert isinstance(route, Route)
        path = route.path.replace("{job_id}", "{id}").replace("{queue:any}", "{queue}")
        served |= {(path, m) for m in route.methods or () if m != "HEAD"}
    assert documented == served - {("/static/{name}", "GET")}
    assert doc["paths"]["/health"]["get"]["security"] == []
    assert openapi_document("/admin")["servers"] == [{"url": "/admin"}]


async def test_mounted_inside_another_app(app: App) -> None:
    register_handlers(app)
    jobs_api = create_asgi_app(app, tokens=[ADMIN_TOKEN])

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with jobs_api.lifespan():
            yield

    async def home(request: Request) -> Response:
        return PlainTextResponse("home")

    outer = Starlette(routes=[Route("/", home), Mount("/admin/jobs", app=jobs_api)], lifespan=lifespan)
    async with in_own_task(outer.router.lifespan_context(outer)), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=outer), base_url=BASE) as c:
        assert (await c.get("/")).text == "home"
        assert (await c.get("/admin/jobs/jobs")).status_code == 401
        created = await c.post("/admin/jobs/jobs", json={"handler": "echo"}, headers=bearer())
        assert created.status_code == 201 and created.headers["location"].startswith("/admin/jobs/jobs/")
        assert (await c.get(created.headers["location"], headers=bearer())).status_code == 200
        doc = (await c.get("/admin/jobs/openapi.json", headers=bearer())).json()
        assert doc["servers"] == [{"url": "/admin/jobs"}]
        login_form = await c.get("/admin/jobs/dashboard")
        assert login_form.status_code == 401 and 'action="/admin/jobs/login"' in login_form.text
        login = await c.post("/admin/jobs/login", data={"token": ADMIN_TOKEN})
        assert login.status_code == 303 and login.headers["location"] == "/admin/jobs/dashboard"
        assert "Path=/admin/jobs" in login.headers["set-cookie"]
        page = await c.get("/admin/jobs/dashboard")
        assert page.status_code == 200 and 'src="static/app.js"' in page.text
        assert (await c.get("/admin/jobs/static/app.js")).status_code == 200
        assert (await c.get("/admin/jobs/", headers=bearer())).headers["location"] == "/admin/jobs/dashboard"
        started = await c.post("/admin/jobs/jobs/runner/start", headers=bearer())
        assert started.status_code == 201
