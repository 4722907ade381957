"""Authentication, guards, sessions and the cross-origin check."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Route

from aiojobs_pg import App, ConfigurationError
from aiojobs_pg.http import JobsApi, create_asgi_app, principal, read_only, require_admin
from aiojobs_pg.http.auth import ENV_TOKEN, SESSION_COOKIE, Authenticator
from tests.http.conftest import ADMIN_TOKEN, BASE, METRICS, READER_TOKEN, bearer, in_own_task
from tests.http.serve_app import register_handlers

MUTATING = {"POST", "PUT", "DELETE"}


def every_route(api: JobsApi) -> list[tuple[str, str]]:
    """(method, concrete path) for every route of the API (job id 1)."""
    result = []
    for route in api.routes:
        assert isinstance(route, Route)
        path = (route.path.replace("{job_id}", "1").replace("{name}", "app.js").replace("{queue:any}", "default")
                .replace("{id}", "1"))
        result += [(m, path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return result


@pytest.fixture
async def guarded(app: App) -> AsyncIterator[JobsApi]:
    """An API with an admin and a read-only token (``require_admin("admin")``), metrics on when installed."""
    register_handlers(app)
    if METRICS:
        from prometheus_client import CollectorRegistry

        from aiojobs_pg.metrics import instrument

        instrument(app, CollectorRegistry())
    api = create_asgi_app(app, tokens={"admin": ADMIN_TOKEN, "reader": READER_TOKEN}, guards=[require_admin("admin")])
    async with in_own_task(api.lifespan()):
        yield api


def client_of(api: JobsApi, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url=BASE, headers=headers)


async def test_auth_matrix_no_route_but_health_answers_without_credentials(guarded: JobsApi, app: App) -> None:
    routes = every_route(guarded)
    assert len(routes) == 35  # with POST /chains and POST /groups
    bad_credentials: list[dict[str, str]] = [
        {}, bearer("wrong-token-0123456789abcdef"), bearer(""), {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": ADMIN_TOKEN}, {"Cookie": f"{SESSION_COOKIE}=forged.1.sig"},
    ]
    for headers in bad_credentials:
        async with client_of(guarded, **headers) as c:
            for method, path in routes:
                body = {"handler": "echo"} if method in MUTATING else None
                response = await c.request(method, path, json=body)
                if (method, path) == ("GET", "/health"):
                    assert response.status_code == 200
                else:
                    assert response.status_code == 401, (headers, method, path, response.status_code)
                    assert response.headers["www-authenticate"].startswith("Bearer")
            assert (await c.get("/no/such/route")).status_code == 401
    assert await app.list_jobs() == []
    assert guarded.runner.state == "stopped"


async def test_reader_reads_and_admin_writes(guarded: JobsApi, app: App) -> None:
    job = await app.enqueue("echo")
    async with client_of(guarded, **bearer(READER_TOKEN)) as reader, client_of(guarded, **bearer()) as admin:
        for method, path in every_route(guarded):
            path = path.replace("/jobs/1", f"/jobs/{job.id}")
            if method in MUTATING and path not in ("/login", "/logout"):
                response = await reader.request(method, path, json={})
                assert response.status_code == 403, (method, path)
                assert response.json() == {"error": "forbidden", "message": "not allowed"}
            elif method == "GET" and path.endswith("/wait"):  # a read: the job is pending, so it times out
                response = await reader.get(path, params={"timeout": "0.05"})
                assert response.status_code == 202, (path, response.status_code)
            elif method == "GET" and (METRICS or path != "/metrics"):
                response = await reader.get(path)
                assert response.status_code in (200, 307), (path, response.status_code)
        assert (await app.get_job(job.id)).status.value == "pending"  # the reader changed nothing
        assert (await admin.post(f"/jobs/{job.id}/cancel")).status_code == 200
        assert (await admin.post("/jobs", json={"handler": "echo"})).status_code == 201


async def test_guards_see_the_principal_and_may_answer_their_own_status(app: App) -> None:
    seen: list[str] = []

    async def audit(request: Request) -> bool:
        who = principal(request)
        assert who is not None
        seen.append(f"{who.name}/{who.via}:{request.method} {request.url.path}")
        return True

    async def teapot(request: Request) -> bool:
        if request.headers.get("x-deny"):
            raise HTTPException(418, "no coffee here")
        return True

    api = create_asgi_app(app, tokens={"ops": ADMIN_TOKEN}, guards=[audit, teapot, read_only])
    async with client_of(api, **bearer()) as c:
        assert (await c.get("/jobs")).status_code == 200
        denied = await c.get("/jobs", headers={"x-deny": "1"})
        assert denied.status_code == 418 and denied.json()["message"] == "no coffee here"
        assert (await c.post("/jobs", json={"handler": "echo"})).status_code == 403  # read_only
    assert seen[0] == "ops/token:GET /jobs"


async def test_require_token_false_leaves_it_to_the_guards(app: App) -> None:
    async def header_session(request: Request) -> bool:  # e.g. the host app's own session check
        return request.headers.get("x-user") == "alice"

    api = create_asgi_app(app, require_token=False, guards=[header_session])
    async with client_of(api) as c:
        assert (await c.get("/jobs")).status_code == 403
        assert (await c.get("/jobs", headers={"x-user": "alice"})).status_code == 200
        assert (await c.get("/health")).status_code == 200
    with pytest.raises(ConfigurationError, match="guard"):
        create_asgi_app(app, require_token=False)


async def test_tokens_come_from_the_environment(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_TOKEN, raising=False)
    with pytest.raises(ConfigurationError, match=ENV_TOKEN):
        create_asgi_app(app)
    monkeypatch.setenv(ENV_TOKEN, f" {ADMIN_TOKEN} , {READER_TOKEN} ")
    api = create_asgi_app(app)
    for token in (ADMIN_TOKEN, READER_TOKEN):
        async with client_of(api, **bearer(token)) as c:
            assert (await c.get("/jobs")).status_code == 200
    for bad in (["has space inside-0123456789"], {"x": ""}, ["same-0123456789abcdef", "same-0123456789abcdef"]):
        with pytest.raises(ConfigurationError):
            create_asgi_app(app, tokens=bad)


async def test_cross_origin_mutations_are_refused(client: httpx.AsyncClient, app: App) -> None:
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"},
                    {"Origin": "null"}, {"Origin": "http://testserver.evil.example"},
                    {"Origin": "http://testserver", "Sec-Fetch-Site": "cross-site"}):
        response = await client.post("/jobs", json={"handler": "echo"}, headers=headers)
        assert response.status_code == 403, headers
        assert response.json()["error"] == "forbidden"
        for method, path in (("DELETE", "/jobs/1"), ("PUT", "/jobs/1"), ("POST", "/jobs/runner/start")):
            assert (await client.request(method, path, json={}, headers=headers)).status_code == 403
    assert await app.list_jobs() == []
    reads = await client.get("/jobs", headers={"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
    assert reads.status_code == 200
    for headers in ({"Origin": "http://testserver"}, {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},
                    {"Sec-Fetch-Site": "none"}):
        assert (await client.post("/jobs", json={"handler": "echo"}, headers=headers)).status_code == 201


async def test_allowed_origins(app: App) -> None:
    register_handlers(app)
    api = create_asgi_app(app, tokens=[ADMIN_TOKEN], allowed_origins=["https://admin.example"])
    async with client_of(api, **bearer()) as c:
        ok = await c.post("/jobs", json={"handler": "echo"}, headers={"Origin": "https://admin.example"})
        assert ok.status_code == 201
        refused = await c.post("/jobs", json={"handler": "echo"}, headers={"Origin": "https://other.example"})
        assert refused.status_code == 403


async def test_dashboard_session_login_use_and_logout(anon: httpx.AsyncClient, app: App) -> None:
    form = await anon.get("/dashboard")
    assert form.status_code == 401 and 'name="token"' in form.text and "text/html" in form.headers["content-type"]
    wrong = await anon.post("/login", data={"token": "nope"})
    assert wrong.status_code == 401 and "not valid" in wrong.text and "set-cookie" not in wrong.headers
    foreign = await anon.post("/login", data={"token": ADMIN_TOKEN}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "set-cookie" not in foreign.headers

    login = await anon.post("/login", data={"token": ADMIN_TOKEN})
    assert login.status_code == 303 and login.headers["location"] == "/dashboard"
    cookie = login.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/", "Max-Age=43200"):
        assert attribute.lower() in cookie.lower(), cookie
    assert ADMIN_TOKEN not in cookie
    assert anon.cookies.get(SESSION_COOKIE)

    page = await anon.get("/dashboard")
    assert page.status_code == 200
    assert (await anon.get("/jobs")).status_code == 200
    created = await anon.post("/jobs", json={"handler": "echo"}, headers={"Origin": BASE})
    assert created.status_code == 201
    ridden = await anon.post("/jobs", json={"handler": "echo"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert ridden.status_code == 403
    assert len(await app.list_jobs()) == 1

    logout = await anon.post("/logout")
    assert logout.status_code == 303 and 'aiojobs_pg_session=""' in logout.headers["set-cookie"]
    assert (await anon.get("/jobs")).status_code == 401


def test_session_cookies_are_signed_expire_and_follow_the_token() -> None:
    auth = Authenticator({"admin": ADMIN_TOKEN, "reader": READER_TOKEN}, session_ttl=60)
    cookie = auth.issue_session("reader", now=1000)
    assert auth.check_session(cookie, now=1059) == "reader"
    assert auth.check_session(cookie, now=1061) is None
    name, expires, signature = cookie.split(".")
    assert auth.check_session(f"{name}.{int(expires) + 1000}.{signature}", now=1000) is None
    admin_name = auth.issue_session("admin", now=1000).split(".")[0]
    assert auth.check_session(f"{admin_name}.{expires}.{signature}", now=1000) is None
    rotated = Authenticator({"reader": "a-brand-new-token-0123456789"}, session_ttl=60)
    assert rotated.check_session(cookie, now=1000) is None
    for junk in ("", "...", "a.b.c", "!!.1.x", "YWRtaW4.1.x", f"{name}.{expires}", "\udcff.1.x"):
        assert auth.check_session(junk, now=0) is None
    assert auth.match_token(ADMIN_TOKEN) == "admin" and auth.match_token(ADMIN_TOKEN + "x") is None
