"""docs/asgi.md's recipe, run as written: a Starlette app whose lifespan is the API's runs the worker,
and the mounted dashboard and health route report it; and a worker the API starts creates the
App's declared schedules, as any worker does.

The Starlette blocks of the page are executed as they stand (with the test database, a schema of
the test's own and a token in the environment); the app's lifespan runs in a task of its own, as
a server runs it, and httpx calls the app. The FastAPI block is the same two calls in FastAPI's
spelling; FastAPI is not a test dependency, so it is only compiled here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from aiojobs_pg import App
from aiojobs_pg.http import create_asgi_app
from aiojobs_pg.http.auth import ENV_TOKEN
from tests.helpers import REPO, eventually
from tests.http.conftest import ADMIN_TOKEN, BASE, bearer, in_own_task

PAGE = REPO / "docs" / "asgi.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.DOTALL)
STARLETTE, FASTAPI, OWN_LIFESPAN = BLOCKS


def run_blocks(*blocks: str) -> dict[str, Any]:
    """Execute blocks of the page, in order, in one namespace (as one ``main.py``)."""
    namespace: dict[str, Any] = {"__name__": "main"}
    for block in blocks:
        exec(compile(block, str(PAGE), "exec"), namespace)
    return namespace


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan (as a server does) and give a client of it."""
    async with in_own_task(app.router.lifespan_context(app)), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        yield client


async def _fetchval(dsn: str, sql: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


@pytest.fixture
async def recipe_env(monkeypatch: pytest.MonkeyPatch, pg_dsn: str, needs_ddl: None
                     ) -> AsyncIterator[Callable[[], Awaitable[int]]]:
    """The environment the recipe reads (database, a fresh schema, the API token); yields a function
    that counts the workers registered in the schema. The schema is dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("AIOJOBS_PG_DSN", pg_dsn)
    monkeypatch.setenv("AIOJOBS_PG_SCHEMA", schema)
    monkeypatch.setenv(ENV_TOKEN, ADMIN_TOKEN)

    async def workers() -> int:
        return int(await _fetchval(pg_dsn, f"SELECT count(*) FROM {schema}.workers"))

    yield workers
    await _fetchval(pg_dsn, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_the_page_has_the_three_blocks() -> None:
    assert "lifespan=jobs_admin.lifespan" in STARLETTE and "Mount(\"/admin/jobs\", jobs_admin)" in STARLETTE
    assert "FastAPI(lifespan=jobs_admin.lifespan)" in FASTAPI and 'app.mount("/admin/jobs", jobs_admin)' in FASTAPI
    compile(FASTAPI, str(PAGE), "exec")
    assert "async with jobs_admin.lifespan():" in OWN_LIFESPAN


async def test_starlette_recipe_runs_the_worker_that_the_dashboard_reports(
        recipe_env: Callable[[], Awaitable[int]]) -> None:
    main = run_blocks(STARLETTE)
    async with serving(main["app"]) as client:
        await _listening(client)
        health = await client.get("/admin/jobs/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "database": True, "listener": True}
        runner = (await client.get("/admin/jobs/jobs/runner", headers=bearer())).json()
        assert (runner["running"], runner["state"]) == (True, "running")
        [local] = runner["workers"]
        assert local["concurrency"] == 10 and local["listenerConnected"] is True
        assert [w["id"] for w in runner["liveWorkers"]] == [local["id"]]

        accepted = await client.post("/signup", json={"email": "ada@example.com"})
        assert accepted.status_code == 202
        url = f"/admin/jobs/jobs/{accepted.json()['job']}"

        async def completed() -> bool:
            return bool((await client.get(url, headers=bearer())).json()["status"] == "completed")

        await eventually(completed, timeout=20)
        assert (await client.get(url, headers=bearer())).json()["result"] == {"sent_to": "ada@example.com"}
        assert (await client.get("/admin/jobs/dashboard", headers=bearer())).status_code == 200
        assert (await client.get("/admin/jobs/jobs")).status_code == 401  # mounted with its auth
    # Shutdown drained the worker, which deregistered, and closed the App.
    assert main["jobs_admin"].runner.state == "stopped"
    assert await recipe_env() == 0


async def _listening(client: httpx.AsyncClient) -> None:
    """Wait for the worker's LISTEN connection: it connects in the background once the worker started."""
    async def up() -> bool:
        return bool((await client.get("/admin/jobs/health")).json()["listener"] is True)
    await eventually(up, timeout=10, message="the worker's listener never connected")


async def test_own_lifespan_recipe(recipe_env: Callable[[], Awaitable[int]]) -> None:
    main = run_blocks(STARLETTE, OWN_LIFESPAN)
    async with serving(main["app"]) as client:
        assert main["app"].state.started is True
        await _listening(client)
        assert (await client.get("/admin/jobs/jobs/runner", headers=bearer())).json()["state"] == "running"
        assert await recipe_env() == 1
    assert main["jobs_admin"].runner.state == "stopped" and await recipe_env() == 0


async def test_the_api_worker_creates_declared_schedules(app: App) -> None:
    @app.periodic("1h", name="hourly-report")
    async def report(data: None) -> None: ...

    api = create_asgi_app(app, tokens=[ADMIN_TOKEN], with_worker=True, concurrency=1)
    async with in_own_task(api.lifespan()):
        assert api.runner.state == "running"
        assert [job.periodic_key for job in await app.admin().recurring()] == ["hourly-report"]
