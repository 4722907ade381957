"""Fixtures of the HTTP API tests: an API on the test App (in-process, httpx), and a live uvicorn server.

The in-process API shares the test's event loop and the ``app`` fixture's pool.
The live server runs uvicorn in a thread with its own loop and its own App (on a
schema of its own): schemathesis and the browser talk to it over TCP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import ssl
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

pytest.importorskip("starlette", reason="the http extra (starlette) is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the http extra (uvicorn) is not installed")

from aiojobs_pg import App  # noqa: E402
from aiojobs_pg.http import JobsApi, create_asgi_app  # noqa: E402
from tests.http.serve_app import register_handlers  # noqa: E402

#: whether the metrics extra (prometheus_client) is installed
METRICS = importlib.util.find_spec("prometheus_client") is not None
ADMIN_TOKEN = "admin-token-0123456789abcdef"
READER_TOKEN = "reader-token-0123456789abcdef"
BASE = "http://testserver"


def bearer(token: str = ADMIN_TOKEN) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def in_own_task(context: AbstractAsyncContextManager[Any]) -> AsyncIterator[None]:
    """Enter and leave ``context`` (a lifespan) in a task of its own, as a server does.

    pytest-asyncio may run a fixture's setup and teardown in different tasks, and
    the lifespan's task group must be entered and left by one task.
    """
    ready, stop = asyncio.Event(), asyncio.Event()

    async def host() -> None:
        async with context:
            ready.set()
            await stop.wait()

    task = asyncio.create_task(host())
    ready_wait = asyncio.create_task(ready.wait())
    await asyncio.wait([task, ready_wait], return_when=asyncio.FIRST_COMPLETED)
    ready_wait.cancel()
    if task.done():
        task.result()
    try:
        yield
    finally:
        stop.set()
        await task


@pytest.fixture
async def api(app: App) -> AsyncIterator[JobsApi]:
    """The API of the test App (handlers echo/boom/slow registered), its lifespan running."""
    register_handlers(app)
    asgi = create_asgi_app(app, tokens={"admin": ADMIN_TOKEN})
    async with in_own_task(asgi.lifespan()):
        yield asgi


@pytest.fixture
async def client(api: JobsApi) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of the in-process API, with the admin token."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url=BASE,
                                 headers=bearer()) as c:
        yield c


@pytest.fixture
async def anon(api: JobsApi) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of the in-process API without credentials."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url=BASE) as c:
        yield c


@dataclass
class LiveServer:
    """A uvicorn server in a thread: ``url`` to reach it, ``token`` to call it."""

    url: str
    token: str
    schema: str

    def client(self, **kwargs: Any) -> httpx.Client:
        """A sync httpx client with the token."""
        kwargs.setdefault("verify", _TLS)
        return httpx.Client(base_url=self.url, headers=bearer(self.token), timeout=10, **kwargs)


#: One TLS context for every client of the live server, which speaks plain HTTP: httpx would otherwise
#: load the CA bundle anew for each client, and the fuzz test makes one per generated request.
_TLS = ssl.create_default_context()


def _serve(server: Any, sock: socket.socket) -> None:
    asyncio.run(server.serve(sockets=[sock]))


async def _drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


def start_live_server(dsn: str, *, with_worker: bool = True) -> Iterator[LiveServer]:
    """Serve a fresh App's API on 127.0.0.1 (random port) until the generator is closed."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    app = App(dsn, schema=schema, lease=3, poll_interval=0.2, maintenance_interval=0.5, drain_timeout=2)
    register_handlers(app)
    if METRICS:  # GET /metrics is documented: serve it (a registry of the server's own)
        from prometheus_client import CollectorRegistry

        from aiojobs_pg.metrics import instrument

        instrument(app, CollectorRegistry())
    asgi = create_asgi_app(app, tokens={"admin": ADMIN_TOKEN}, with_worker=with_worker, concurrency=4)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(asgi, lifespan="on", log_level="warning"))
    thread = threading.Thread(target=_serve, args=(server, sock), daemon=True, name="live-api")
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live API server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", ADMIN_TOKEN, schema)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        asyncio.run(_drop_schema(dsn, schema))


@pytest.fixture(scope="module")
def live_server(pg_dsn: str) -> Iterator[LiveServer]:
    """A live server (with a worker of concurrency 4) shared by the tests of one module."""
    yield from start_live_server(pg_dsn)
