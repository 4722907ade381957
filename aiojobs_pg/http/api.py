"""The management API of an :class:`~aiojobs_pg.App` as a Starlette ASGI app.

Handlers are thin: parse (``serialize``), call :class:`~aiojobs_pg.admin.Admin` or the
App, render. Errors become JSON ``{error, message[, field]}``: validation 422,
unknown job 404, wrong status 409, body too large 413, database down 503.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ..app import App
from ..errors import ConfigurationError, JobNotFound, JobStateError, ValidationError, WebhookNotFound
from ..logs import get_logger
from ..models import Job
from ..queries import DB_ERRORS
from ..waiting import JobCancelled, JobFailed
from . import serialize as ser
from .auth import (
    PUBLIC_PATHS,
    SAFE_METHODS,
    SESSION_COOKIE,
    SESSION_TTL,
    Authenticator,
    Gate,
    Guard,
    Tokens,
    error_response,
    load_tokens,
    route_path,
)
from .dashboard import Dashboard, base_path, login_page
from .openapi import openapi_document
from .routing import Resource
from .runner import Runner, RunnerError

log = get_logger("aiojobs_pg.http")

#: seconds ``GET /health`` waits for the database
HEALTH_TIMEOUT = 3.0
#: ``/jobs/runner`` is the runner's: "runner" is never a job id, so other methods there are 405, not 404
_JOB_IDS = {"job_id": ["runner"]}
#: what a health check's query raises when the database cannot be used
_UNREACHABLE: tuple[type[Exception], ...] = (ConfigurationError, *DB_ERRORS)
_ERROR_NAMES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 409: "conflict", 413: "too_large", 422: "validation_error",
                503: "unavailable"}


class BodyTooLarge(Exception):
    """The request body is over the limit."""


class Handlers:
    """The endpoints, bound to one App and its runner."""

    def __init__(self, app: App, runner: Runner, authenticator: Authenticator, *, max_body: int) -> None:
        self.app = app
        self.runner = runner
        self.authenticator = authenticator
        self.max_body = max_body
        self.dashboard = Dashboard()

    # --- helpers ---
    async def _body(self, request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    async def _object(self, request: Request, *, required: bool = True) -> dict[str, Any]:
        return ser.parse_json_object(await self._body(request), required=required)

    @staticmethod
    def _job_id(request: Request) -> int:
        text: str = request.path_params["job_id"]
        if text.isascii() and text.isdigit() and len(text) <= 19 and 0 < int(text) <= 2**63 - 1:
            return int(text)
        raise HTTPException(404, f"job {text[:40]!r} not found")

    async def _runner_json(self) -> dict[str, Any]:
        live = await self.app.admin().workers()
        return {"running": self.runner.state == "running", "state": self.runner.state,
                "workers": self.runner.local_json(), "liveWorkers": [ser.live_worker_json(w) for w in live],
                "lastError": self.runner.last_error}

    # --- jobs ---
    async def _job_json(self, job: Job) -> dict[str, Any]:
        # Every job the API returns says whether a live worker serves it (the workers table is small).
        return ser.job_json(job, served=await self.app.admin().served())

    async def list_jobs(self, request: Request) -> Response:
        """``GET /jobs``: one page of jobs, newest first."""
        params = ser.query_params(request.scope["query_string"])
        page = await self.app.admin().list_jobs(**ser.list_kwargs(params))
        served = await self.app.admin().served()
        cursor = None if page.next_cursor is None else str(page.next_cursor)
        now = datetime.now(UTC)

        def render() -> list[dict[str, Any]]:
            return [ser.job_json(j, now, served) for j in page.jobs]

        # A cron schedule's preview costs about 0.7 ms: a page of many recurring jobs renders in a
        # thread, so that it does not hold up the event loop (and a worker's heartbeat in this process).
        recurring = sum(j.schedule is not None for j in page.jobs)
        data = await anyio.to_thread.run_sync(render) if recurring > 20 else render()
        return JSONResponse({"data": data, "nextCursor": cursor})

    async def create_job(self, request: Request) -> Response:
        """``POST /jobs``: enqueue a job."""
        kwargs = ser.enqueue_kwargs(await self._object(request))
        job = await self.app.enqueue(**kwargs)
        # 201 either way (as before dedupWindow): "existing" says whether a job holding the dedup key came back
        return JSONResponse({**await self._job_json(job), "existing": job.existing}, status_code=201,
                            headers={"Location": f"{base_path(request)}/jobs/{job.id}"})

    async def create_chain(self, request: Request) -> Response:
        """``POST /chains``: enqueue jobs that run one after another (:meth:`App.chain`)."""
        jobs = await self.app.chain(ser.chain_steps(await self._object(request)))
        served = await self.app.admin().served()
        return JSONResponse({"data": [ser.job_json(j, served=served) for j in jobs]}, status_code=201)

    async def create_group(self, request: Request) -> Response:
        """``POST /groups``: enqueue jobs side by side and a callback after all of them (:meth:`App.group`)."""
        members, then = ser.group_jobs(await self._object(request))
        jobs, callback = await self.app.group(members, then=then)
        served = await self.app.admin().served()
        return JSONResponse({"members": [ser.job_json(j, served=served) for j in jobs],
                             "then": ser.job_json(callback, served=served)}, status_code=201)

    async def get_job(self, request: Request) -> Response:
        """``GET /jobs/{id}``."""
        return JSONResponse(await self._job_json(await self.app.admin().get_job(self._job_id(request))))

    async def update_job(self, request: Request) -> Response:
        """``PUT /jobs/{id}``: change the fields given."""
        job_id = self._job_id(request)
        kwargs = ser.update_kwargs(await self._object(request))
        return JSONResponse(await self._job_json(await self.app.admin().update_job(job_id, **kwargs)))

    async def delete_job(self, request: Request) -> Response:
        """``DELETE /jobs/{id}``: the job and its history."""
        await self.app.admin().delete_job(self._job_id(request))
        return Response(status_code=204)

    async def trigger(self, request: Request) -> Response:
        """``POST /jobs/{id}/trigger``: run now (a finished job is re-queued)."""
        return JSONResponse(await self._job_json(await self.app.admin().trigger(self._job_id(request))))

    async def cancel(self, request: Request) -> Response:
        """``POST /jobs/{id}/cancel``: cancel a pending or running job."""
        return JSONResponse(await self._job_json(await self.app.admin().cancel(self._job_id(request))))

    async def retry(self, request: Request) -> Response:
        """``POST /jobs/{id}/retry``: re-queue a failed or cancelled job."""
        return JSONResponse(await self._job_json(await self.app.admin().retry(self._job_id(request))))

    async def wait(self, request: Request) -> Response:
        """``GET /jobs/{id}/wait?timeout=30``: the job once it finished (``App.wait``).

        200 and the job when it completed (its ``result``); 409 ``job_failed`` / ``job_cancelled``
        with the job when it failed or was cancelled; 202 and the job as it stands when ``timeout``
        seconds passed first (ask again); 409 ``conflict`` for a recurring job, which never finishes.
        """
        job_id = self._job_id(request)
        timeout = ser.wait_timeout(ser.query_params(request.scope["query_string"]))
        try:
            await self.app.wait(job_id, timeout=timeout)
        except TimeoutError:
            job = await self.app.admin().get_job(job_id)
            return JSONResponse(await self._job_json(job), status_code=202, headers={"Cache-Control": "no-store"})
        except (JobFailed, JobCancelled) as exc:
            error = "job_failed" if isinstance(exc, JobFailed) else "job_cancelled"
            return error_response(409, error, str(exc), status=exc.job.status.value,
                                  job=await self._job_json(exc.job))
        return JSONResponse(await self._job_json(await self.app.admin().get_job(job_id)))

    async def history(self, request: Request) -> Response:
        """``GET /jobs/{id}/history``: every recorded run, oldest first."""
        runs = await self.app.admin().history(self._job_id(request))
        return JSONResponse({"data": [ser.run_json(r) for r in runs]})

    async def schedules(self, request: Request) -> Response:
        """``GET /schedules``: every recurring job, soonest first, each with its ``nextRuns``."""
        ser.no_params(ser.query_params(request.scope["query_string"]))
        jobs = await self.app.admin().recurring()
        served = await self.app.admin().served()
        now = datetime.now(UTC)

        def render() -> list[dict[str, Any]]:
            return [ser.job_json(j, now, served) for j in jobs]

        # as in list_jobs: many cron previews render in a thread
        data = await anyio.to_thread.run_sync(render) if len(jobs) > 20 else render()
        return JSONResponse({"data": data})

    async def throughput(self, request: Request) -> Response:
        """``GET /stats/throughput?minutes=60``: recorded runs per minute and status, from the history."""
        minutes = ser.throughput_minutes(ser.query_params(request.scope["query_string"]))
        now, rows = await self.app.admin().throughput(minutes)
        return JSONResponse(ser.throughput_json(now, rows))

    # --- runner, queues, health ---
    async def runner_status(self, request: Request) -> Response:
        """``GET /jobs/runner``: this process's worker, and live workers on every host."""
        return JSONResponse(await self._runner_json())

    async def runner_start(self, request: Request) -> Response:
        """``POST /jobs/runner/start``: run a worker in this process."""
        kwargs = ser.runner_kwargs(await self._object(request, required=False))
        await self.runner.start(**kwargs)
        return JSONResponse(await self._runner_json(), status_code=201)

    async def runner_stop(self, request: Request) -> Response:
        """``POST /jobs/runner/stop``: drain and stop this process's worker (202: it stops in the background)."""
        self.runner.stop()
        return JSONResponse(await self._runner_json(), status_code=202)

    async def queues(self, request: Request) -> Response:
        """``GET /queues``: job counts per queue and status, and the age of the oldest due job."""
        admin = self.app.admin()
        rows, paused, unserved = await admin.queue_stats(), await admin.paused_queues(), await admin.unserved()
        settings = await admin.queue_settings()
        return JSONResponse({"data": ser.queues_json(rows, datetime.now(UTC), paused, unserved, settings=settings),
                             "completedFrom": ser.COMPLETED_FROM})

    async def pause_queue(self, request: Request) -> Response:
        """``POST /queues/{queue}/pause``: no worker on any host claims the queue's jobs until resumed."""
        queue: str = request.path_params["queue"]
        await self.app.admin().pause_queue(queue)
        return JSONResponse({"queue": queue, "paused": True})

    async def resume_queue(self, request: Request) -> Response:
        """``POST /queues/{queue}/resume``."""
        queue: str = request.path_params["queue"]
        await self.app.admin().resume_queue(queue)
        return JSONResponse({"queue": queue, "paused": False})

    async def queue_settings(self, request: Request) -> Response:
        """``POST /queues/{queue}/settings``: set or remove (null) the queue's concurrency and rate limits for
        every worker on every host; a field left out is kept (docs/limits.md)."""
        queue: str = request.path_params["queue"]
        kwargs = ser.queue_settings_kwargs(await self._object(request))
        return JSONResponse(ser.queue_settings_json(await self.app.admin().set_queue(queue, **kwargs)))

    async def retry_failed(self, request: Request) -> Response:
        """``POST /bulk/retry-failed``: every failed job (of a queue, a handler) back to pending."""
        kwargs = ser.bulk_kwargs(await self._object(request, required=False), older_than=False)
        return JSONResponse({"count": await self.app.admin().retry_failed(**kwargs)})

    async def cancel_pending(self, request: Request) -> Response:
        """``POST /bulk/cancel-pending``: every pending job (of a queue, a handler) cancelled."""
        kwargs = ser.bulk_kwargs(await self._object(request, required=False), older_than=False)
        return JSONResponse({"count": await self.app.admin().cancel_pending(**kwargs)})

    async def delete_finished(self, request: Request) -> Response:
        """``POST /bulk/delete-finished``: jobs finished more than ``olderThan`` ago, with their history."""
        kwargs = ser.bulk_kwargs(await self._object(request), older_than=True)
        older_than = kwargs.pop("older_than")
        return JSONResponse({"count": await self.app.admin().delete_finished(older_than, **kwargs)})

    # --- webhooks ---
    async def list_webhooks(self, request: Request) -> Response:
        """``GET /webhooks``: every webhook, oldest first (without secrets)."""
        return JSONResponse({"data": [ser.webhook_json(h) for h in await self.app.admin().webhooks()]})

    async def add_webhook(self, request: Request) -> Response:
        """``POST /webhooks``: register a URL for job events; the response holds the secret, once."""
        kwargs = ser.webhook_kwargs(await self._object(request))
        hook = await self.app.admin().add_webhook(kwargs.pop("url"), kwargs.pop("events"), **kwargs)
        return JSONResponse(ser.webhook_json(hook), status_code=201, headers={
            "Location": f"{base_path(request)}/webhooks/{hook.id}", "Cache-Control": "no-store"})

    async def remove_webhook(self, request: Request) -> Response:
        """``DELETE /webhooks/{id}``."""
        text: str = request.path_params["id"]
        if not (text.isascii() and text.isdigit() and len(text) <= 19 and 0 < int(text) <= 2**63 - 1):
            raise HTTPException(404, f"webhook {text[:40]!r} not found")
        await self.app.admin().remove_webhook(int(text))
        return Response(status_code=204)

    async def health(self, request: Request) -> Response:
        """``GET /health`` (no credentials): the database answers; the local listener is connected."""
        database = True
        try:
            with anyio.fail_after(HEALTH_TIMEOUT):
                await self.app.admin().workers()
        except _UNREACHABLE as exc:
            log.warning("health_database_unreachable", error=repr(exc))
            database = False
        listener = self.runner.listener_ok()
        ok = database and listener is not False
        return JSONResponse({"status": "ok" if ok else "unavailable", "database": database, "listener": listener},
                            status_code=200 if ok else 503, headers={"Cache-Control": "no-store"})

    async def metrics(self, request: Request) -> Response:
        """``GET /metrics``: the Prometheus metrics of this process, once ``aiojobs_pg.metrics.instrument(app)`` ran."""
        try:
            from ..metrics import metrics_of
        except ModuleNotFoundError:  # the metrics extra is not installed: then nothing can be instrumented
            metrics = None
        else:
            metrics = metrics_of(self.app)
        if metrics is None:
            return error_response(404, "not_found", "metrics are not enabled: call aiojobs_pg.metrics.instrument(app) "
                                                    "before the worker starts (the 'metrics' extra)")
        body, content_type = await metrics.render(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    async def openapi(self, request: Request) -> Response:
        """``GET /openapi.json``."""
        return JSONResponse(openapi_document(base_path(request)))

    # --- browser session ---
    async def root(self, request: Request) -> Response:
        """``GET /``: to the dashboard."""
        return RedirectResponse(f"{base_path(request)}/dashboard", status_code=307)

    async def login(self, request: Request) -> Response:
        """``POST /login`` (form field ``token``): start a dashboard session (303) or 401."""
        try:
            form = parse_qs((await self._body(request)).decode("utf-8", "replace"), max_num_fields=10)
        except ValueError:  # too many fields: not our form
            form = {}
        name = self.authenticator.match_token(form.get("token", [""])[0])
        if name is None:
            log.warning("login_failed", client=request.client.host if request.client else None)
            return login_page(request, error="That token is not valid.")
        response = RedirectResponse(f"{base_path(request)}/dashboard", status_code=303)
        response.set_cookie(SESSION_COOKIE, self.authenticator.issue_session(name),
                            max_age=self.authenticator.session_ttl, path=base_path(request) or "/",
                            secure=request.url.scheme == "https", httponly=True, samesite="strict")
        return response

    async def logout(self, request: Request) -> Response:
        """``POST /logout``: end the dashboard session."""
        response = RedirectResponse(f"{base_path(request)}/dashboard", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=base_path(request) or "/", httponly=True, samesite="strict")
        return response

    def routes(self) -> list[Resource]:
        """Every route, one per path; the runner's come before ``/jobs/{job_id}``, where "runner" is no id."""
        ids = _JOB_IDS
        return [
            Resource("/", name="root", get=self.root),
            Resource("/dashboard", name="dashboard", get=self.dashboard.page),
            Resource("/static/{name}", name="static", get=self.dashboard.static),
            Resource("/login", name="login", post=self.login),
            Resource("/logout", name="logout", post=self.logout),
            Resource("/health", name="health", get=self.health),
            Resource("/openapi.json", name="openapi", get=self.openapi),
            Resource("/metrics", name="metrics", get=self.metrics),
            Resource("/queues", name="queues", get=self.queues),
            Resource("/schedules", name="schedules", get=self.schedules),
            Resource("/stats/throughput", name="throughput", get=self.throughput),
            Resource("/queues/{queue:any}/pause", name="queue_pause", post=self.pause_queue),
            Resource("/queues/{queue:any}/resume", name="queue_resume", post=self.resume_queue),
            Resource("/queues/{queue:any}/settings", name="queue_settings", post=self.queue_settings),
            Resource("/bulk/retry-failed", name="bulk_retry_failed", post=self.retry_failed),
            Resource("/bulk/cancel-pending", name="bulk_cancel_pending", post=self.cancel_pending),
            Resource("/bulk/delete-finished", name="bulk_delete_finished", post=self.delete_finished),
            Resource("/webhooks", name="webhooks", get=self.list_webhooks, post=self.add_webhook),
            Resource("/webhooks/{id}", name="webhook", delete=self.remove_webhook),
            Resource("/jobs", name="jobs", get=self.list_jobs, post=self.create_job),
            Resource("/chains", name="chains", post=self.create_chain),
            Resource("/groups", name="groups", post=self.create_group),
            Resource("/jobs/runner", name="runner", get=self.runner_status),
            Resource("/jobs/runner/start", name="runner_start", post=self.runner_start),
            Resource("/jobs/runner/stop", name="runner_stop", post=self.runner_stop),
            Resource("/jobs/{job_id}", name="job", get=self.get_job, put=self.update_job, delete=self.delete_job,
                     reserved=ids),
            Resource("/jobs/{job_id}/history", name="history", get=self.history, reserved=ids),
            Resource("/jobs/{job_id}/wait", name="wait", get=self.wait, reserved=ids),
            Resource("/jobs/{job_id}/trigger", name="trigger", post=self.trigger, reserved=ids),
            Resource("/jobs/{job_id}/cancel", name="cancel", post=self.cancel, reserved=ids),
            Resource("/jobs/{job_id}/retry", name="retry", post=self.retry, reserved=ids),
        ]


# --- errors ---

def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    field = ser.api_field(exc.field)
    return error_response(422, "validation_error", f"{field}: {exc.message}", field=field)


def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(404, "not_found", str(exc))


def _state_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, JobStateError)
    return error_response(409, "conflict", str(exc), status=exc.status)


def _runner_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RunnerError)
    return error_response(exc.status, _ERROR_NAMES.get(exc.status, "error"), exc.message)


def _too_large(request: Request, exc: Exception) -> Response:
    return error_response(413, "too_large", "request body over the size limit")


def _unavailable(request: Request, exc: Exception) -> Response:
    log.error("database_error", path=route_path(request.scope), error=repr(exc))
    message = str(exc) if isinstance(exc, ConfigurationError) else "the database is unavailable"
    return error_response(503, "unavailable", message)


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = error_response(exc.status_code, _ERROR_NAMES.get(exc.status_code, "error"), str(exc.detail))
    response.headers.update(exc.headers or {})
    return response


def _unauthenticated(request: Request) -> Response:
    if request.method in SAFE_METHODS and route_path(request.scope) in ("/", "/dashboard"):
        return login_page(request)
    response = error_response(401, "unauthorized", "missing or invalid credentials: send 'Authorization: Bearer "
                                                   "<token>'")
    response.headers["WWW-Authenticate"] = 'Bearer realm="aiojobs_pg"'
    return response


def _is_open(app: App) -> bool:
    try:
        return app.pool is not None
    except ConfigurationError:
        return False


class JobsApi(Starlette):
    """The Starlette app returned by :func:`create_asgi_app`.

    Served on its own, its lifespan opens the App (unless it is open already) and
    closes it, and hosts the runner's worker. Mounted inside another app, whose
    lifespan does not reach mounted apps, give :meth:`lifespan` as that app's
    lifespan, or enter it from yours.
    """

    def __init__(self, app: App, handlers: Handlers, *, middleware: Sequence[Middleware], worker: dict[str, Any] | None
                 ) -> None:
        self.jobs_app = app
        self.runner = handlers.runner
        self._worker = worker
        super().__init__(
            routes=handlers.routes(), middleware=middleware, lifespan=self._lifespan,
            exception_handlers={
                ValidationError: _validation_error, JobNotFound: _not_found, WebhookNotFound: _not_found,
                JobStateError: _state_error,
                RunnerError: _runner_error, BodyTooLarge: _too_large, HTTPException: _http_error,
                ConfigurationError: _unavailable, **{cls: _unavailable for cls in DB_ERRORS},
            })

    @asynccontextmanager
    async def lifespan(self, _host: object = None) -> AsyncIterator[None]:
        """Open the App if needed, host the runner (starting a worker if asked), then drain and close.

        It takes (and ignores) the host app, so that it serves as the lifespan of the app this API is
        mounted in: ``Starlette(lifespan=api.lifespan)``, ``FastAPI(lifespan=api.lifespan)``. With a
        lifespan of your own, enter it there: ``async with api.lifespan(): yield``. See docs/asgi.md.
        """
        opened = not _is_open(self.jobs_app)
        if opened:
            await self.jobs_app.open()
        try:
            async with anyio.create_task_group() as tg:
                self.runner.attach(tg)
                try:
                    if self._worker is not None:
                        await self.runner.start(**self._worker)
                    yield
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.runner.shutdown()
                    self.runner.attach(None)
                    tg.cancel_scope.cancel()
        finally:
            if opened:
                with anyio.CancelScope(shield=True):
                    await self.jobs_app.close()

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        async with self.lifespan():
            yield


def create_asgi_app(
    app: App,
    *,
    tokens: Tokens = None,
    guards: Sequence[Guard] = (),
    require_token: bool = True,
    allowed_origins: Collection[str] = (),
    with_worker: bool = False,
    concurrency: int = 10,
    queues: Sequence[str] | None = None,
    max_body: int = ser.MAX_BODY,
    session_ttl: int = SESSION_TTL,
    public_metrics: bool = False,
) -> JobsApi:
    """The management API and dashboard of ``app`` as an ASGI app (Starlette).

    ``tokens``: bearer tokens, ``{name: token}`` or a list (default: ``$AIOJOBS_PG_API_TOKEN``,
    comma-separated). ``guards``: async callables ``guard(request) -> bool`` run after
    authentication, in order; any False answers 403 (see :func:`~aiojobs_pg.http.require_admin`).
    ``require_token=False`` leaves authentication to the guards (e.g. your own session
    check when mounted in your app). ``allowed_origins``: origins besides the server's
    own that may send mutating requests. ``with_worker``: start a worker
    (``concurrency``, ``queues``) in the lifespan. ``GET /metrics`` serves the App's Prometheus
    metrics once :func:`aiojobs_pg.metrics.instrument` enabled them, behind the same credentials as
    every route; ``public_metrics=True`` answers it without any (and without the guards), for a
    scraper that cannot send a bearer token.
    """
    named = load_tokens(tokens) if require_token else {}
    if require_token and not named:
        raise ConfigurationError("the HTTP API needs a token: set AIOJOBS_PG_API_TOKEN or pass tokens=…; "
                                 "or pass require_token=False with guards that authenticate")
    if not require_token and not guards:
        raise ConfigurationError("require_token=False needs at least one guard to decide who may call the API")
    authenticator = Authenticator(named, require_token=require_token, session_ttl=session_ttl)
    handlers = Handlers(app, Runner(app), authenticator, max_body=max_body)
    middleware = [Middleware(Gate, authenticator=authenticator, guards=guards, allowed_origins=allowed_origins,
                             max_body=max_body, unauthenticated=_unauthenticated,
                             public_paths=(PUBLIC_PATHS | {"/metrics"}) if public_metrics else PUBLIC_PATHS)]
    worker = {"concurrency": concurrency, "queues": queues} if with_worker else None
    return JobsApi(app, handlers, middleware=middleware, worker=worker)
