"""Prometheus metrics (``aiojobs_pg.metrics``): counts and histograms from real workers, the gauges
read from the database at scrape time, ``GET /metrics`` and ``worker --metrics-port``."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytest.importorskip("prometheus_client", reason="the metrics extra (prometheus_client) is not installed")

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from aiojobs_pg import App, Cancel, ConfigurationError, Retry, ValidationError
from aiojobs_pg.metrics import Metrics, instrument, metrics_of
from tests.helpers import REPO, eventually, register_slow


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry of the test's own (the default one is the process's)."""
    return CollectorRegistry()


@pytest.fixture
def metrics(app: App, registry: CollectorRegistry) -> Metrics:
    """The test App, instrumented in ``registry``."""
    return instrument(app, registry)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value (0 when it is absent). Read on the event loop: the gauges of the database are
    those of the last :meth:`Metrics.refresh`."""
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def register_outcomes(app: App) -> None:
    """Handlers with one outcome each: ok completes, flaky retries once then completes, bad fails
    (one attempt), stop cancels itself."""

    @app.handler()
    async def ok(data: Any) -> str:
        await asyncio.sleep(0.05)  # a run long enough to see in the duration's sum
        return "done"

    @app.handler()
    async def flaky(data: Any, ctx: Any) -> None:
        if ctx.attempt == 1:
            raise Retry(after=0)

    @app.handler()
    async def bad(data: Any) -> None:
        raise RuntimeError("bad")

    @app.handler()
    async def stop(data: Any) -> None:
        raise Cancel("not wanted")


# --- counters and histograms, from a real worker ---

async def test_counts_each_outcome_by_handler_and_queue(app: App, metrics: Metrics,
                                                        registry: CollectorRegistry) -> None:
    register_outcomes(app)
    for _ in range(3):
        await app.enqueue("ok")
    await app.enqueue_many([{"handler": "ok", "queue": "other"}, {"handler": "ok", "queue": "other"}])
    await app.enqueue("flaky")
    await app.enqueue("bad", max_attempts=1)
    await app.enqueue("stop")
    assert value(registry, "aiojobs_pg_jobs_enqueued_total", handler="ok", queue="default") == 3
    assert value(registry, "aiojobs_pg_jobs_enqueued_total", handler="ok", queue="other") == 2

    async with app.worker(queues=["default", "other"]):
        await eventually(lambda: value(registry, "aiojobs_pg_jobs_completed_total", handler="ok", queue="default") == 3
                         and value(registry, "aiojobs_pg_jobs_completed_total", handler="ok", queue="other") == 2
                         and value(registry, "aiojobs_pg_jobs_completed_total", handler="flaky", queue="default") == 1
                         and value(registry, "aiojobs_pg_jobs_failed_total", handler="bad", queue="default") == 1
                         and value(registry, "aiojobs_pg_jobs_cancelled_total", handler="stop", queue="default") == 1,
                         message="every outcome counted")

    def sample(name: str, handler: str, queue: str = "default") -> float:
        return value(registry, name, handler=handler, queue=queue)

    assert sample("aiojobs_pg_jobs_started_total", "ok") == 3
    assert sample("aiojobs_pg_jobs_started_total", "flaky") == 2  # the retry is a second run
    assert sample("aiojobs_pg_jobs_retried_total", "flaky") == 1
    assert sample("aiojobs_pg_jobs_failed_total", "flaky") == 0
    assert sample("aiojobs_pg_jobs_retried_total", "bad") == 0
    assert sample("aiojobs_pg_jobs_completed_total", "bad") == 0
    # Every run is timed, and each start's wait past the due time observed.
    assert sample("aiojobs_pg_job_run_duration_seconds_count", "ok") == 3
    assert sample("aiojobs_pg_job_run_duration_seconds_sum", "ok") >= 0.15
    assert sample("aiojobs_pg_job_run_duration_seconds_count", "flaky") == 2
    assert sample("aiojobs_pg_job_pickup_latency_seconds_count", "ok", "other") == 2
    assert sample("aiojobs_pg_job_pickup_latency_seconds_count", "flaky") == 2
    assert registry.get_sample_value("aiojobs_pg_job_run_duration_seconds_bucket",
                                     {"handler": "ok", "queue": "default", "le": "+Inf"}) == 3
    assert registry.get_sample_value("aiojobs_pg_job_run_duration_seconds_bucket",
                                     {"handler": "ok", "queue": "default", "le": "0.01"}) == 0


async def test_pickup_latency_measures_the_wait_past_the_due_time(app: App, metrics: Metrics,
                                                                  registry: CollectorRegistry) -> None:
    register_outcomes(app)
    # Due two minutes ago: its run starts at least that late.
    await app.enqueue("ok", run_at=datetime.now(UTC) - timedelta(minutes=2))
    async with app.worker():
        await eventually(lambda: value(registry, "aiojobs_pg_jobs_completed_total", handler="ok", queue="default") == 1)
    assert value(registry, "aiojobs_pg_job_pickup_latency_seconds_sum", handler="ok", queue="default") >= 119
    assert registry.get_sample_value("aiojobs_pg_job_pickup_latency_seconds_bucket",
                                     {"handler": "ok", "queue": "default", "le": "60.0"}) == 0


async def test_a_run_released_at_shutdown_is_counted_and_not_timed(app: App, metrics: Metrics,
                                                                    registry: CollectorRegistry) -> None:
    started, _stopped = register_slow(app)
    await app.enqueue("slow")
    worker = app.create_worker(drain_timeout=0)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(worker.run())
        await asyncio.wait_for(started.wait(), 10)
        worker.stop()
    assert value(registry, "aiojobs_pg_jobs_released_total", handler="slow", queue="default") == 1
    assert value(registry, "aiojobs_pg_jobs_started_total", handler="slow", queue="default") == 1
    assert value(registry, "aiojobs_pg_job_run_duration_seconds_count", handler="slow", queue="default") == 0


# --- the gauges read at scrape time ---

async def test_queue_gauges_read_the_database(app: App, metrics: Metrics, registry: CollectorRegistry) -> None:
    for _ in range(3):
        await app.enqueue("ok", queue="mail")
    await app.enqueue("ok", queue="mail", run_at=datetime.now(UTC) - timedelta(seconds=90))
    await app.enqueue("ok", queue="mail", delay=3600)  # pending, not due
    late = await app.enqueue("ok", queue="reports")
    await app.cancel(late.id)

    assert await metrics.refresh()
    assert value(registry, "aiojobs_pg_queue_stats_up") == 1
    assert value(registry, "aiojobs_pg_queue_jobs", queue="mail", status="pending") == 5
    assert value(registry, "aiojobs_pg_queue_jobs", queue="mail", status="running") == 0
    assert registry.get_sample_value("aiojobs_pg_queue_jobs", {"queue": "mail", "status": "failed"}) == 0
    assert value(registry, "aiojobs_pg_queue_jobs", queue="reports", status="cancelled") == 1
    assert 90 <= value(registry, "aiojobs_pg_queue_oldest_due_age_seconds", queue="mail") < 600
    assert registry.get_sample_value("aiojobs_pg_queue_oldest_due_age_seconds", {"queue": "reports"}) == 0

    # A job completes: the next scrape sees it, without anything counted in this process.
    await app.pool.execute(f"DELETE FROM {app.schema}.jobs WHERE queue = 'mail' AND next_run_at > now()")
    assert await metrics.refresh()
    assert value(registry, "aiojobs_pg_queue_jobs", queue="mail", status="pending") == 4


async def test_a_scrape_from_another_thread_reads_on_the_apps_loop(app: App, metrics: Metrics,
                                                                   registry: CollectorRegistry) -> None:
    await app.enqueue("ok", queue="threaded")
    await metrics.refresh()  # learns the App's loop (as a worker or start_http_server does)
    await app.enqueue("ok", queue="threaded")
    # prometheus_client's server collects in a thread of its own: the read goes through this loop.
    found = await asyncio.to_thread(registry.get_sample_value, "aiojobs_pg_queue_jobs",
                                    {"queue": "threaded", "status": "pending"})
    assert found == 2


async def test_a_database_that_cannot_answer_is_reported_not_raised(pg_dsn: str, schema_name: str,
                                                                     registry: CollectorRegistry) -> None:
    closed = App(pg_dsn, schema=schema_name)  # never opened: every read fails
    metrics = instrument(closed, registry)
    assert not await metrics.refresh()
    body, _ = await metrics.render()
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["aiojobs_pg_queue_stats_up"].samples[0].value == 0
    assert families["aiojobs_pg_queue_jobs"].samples == []


async def test_running_jobs_per_worker(app: App, metrics: Metrics, registry: CollectorRegistry) -> None:
    started, _stopped = register_slow(app)
    await app.enqueue("slow")
    async with app.worker(concurrency=4) as worker:
        await asyncio.wait_for(started.wait(), 10)
        assert value(registry, "aiojobs_pg_worker_running_jobs", worker=worker.id) == 1
        assert value(registry, "aiojobs_pg_worker_concurrency", worker=worker.id) == 4
        await app.cancel((await app.list_jobs(handler="slow"))[0].id)
        await eventually(lambda: value(registry, "aiojobs_pg_worker_running_jobs", worker=worker.id) == 0)
    # A stopped worker is no longer reported.
    assert registry.get_sample_value("aiojobs_pg_worker_concurrency", {"worker": worker.id}) is None


# --- enabling ---

async def test_instrument_once_per_app_and_one_app_per_registry(app: App, pg_dsn: str,
                                                                registry: CollectorRegistry) -> None:
    metrics = instrument(app, registry)
    assert instrument(app, registry) is metrics
    assert metrics_of(app) is metrics and app.observer is metrics
    with pytest.raises(ConfigurationError, match="another registry"):
        instrument(app, CollectorRegistry())
    other = App(pg_dsn, schema="unused")
    with pytest.raises(ConfigurationError, match="registry already holds aiojobs_pg metrics"):
        instrument(other, registry)
    assert other.observer is None
    with pytest.raises(ValidationError) as bad:
        instrument(other, registry=object())  # type: ignore[arg-type]
    assert bad.value.field == "registry"
    with pytest.raises(ValidationError) as slow:
        instrument(other, CollectorRegistry(), read_timeout=0)
    assert slow.value.field == "read_timeout"
    metrics.unregister()
    assert app.observer is None and metrics_of(app) is None
    assert registry.get_sample_value("aiojobs_pg_queue_stats_up") is None
    assert instrument(other, registry).registry is registry  # the names are free again


async def test_without_instrument_nothing_is_observed(app: App) -> None:
    register_outcomes(app)
    await app.enqueue("ok")
    async with app.worker() as worker:
        assert worker.observer is None
        await eventually(lambda: not worker.inflight and worker.producer.claimed == 1)
    assert metrics_of(app) is None


# --- GET /metrics ---

@pytest.fixture
def http_api() -> Any:
    """The HTTP layer, or skip without the http extra."""
    pytest.importorskip("starlette", reason="the http extra (starlette) is not installed")
    import httpx

    from aiojobs_pg.http import create_asgi_app
    from tests.http.conftest import in_own_task

    return httpx, create_asgi_app, in_own_task


TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
async def metrics_clients(app: App, http_api: Any, request: pytest.FixtureRequest
                          ) -> AsyncIterator[tuple[Any, Any]]:
    """(client with the token, client without), of the API of ``app`` (``public_metrics`` from the param)."""
    httpx, create_asgi_app, in_own_task = http_api
    asgi = create_asgi_app(app, tokens={"scraper": TOKEN}, public_metrics=getattr(request, "param", False))
    async with in_own_task(asgi.lifespan()):
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as authed, \
                httpx.AsyncClient(transport=transport, base_url="http://testserver") as anon:
            yield authed, anon


async def test_metrics_route_serves_the_registry(app: App, metrics: Metrics, metrics_clients: tuple[Any, Any]) -> None:
    authed, anon = metrics_clients
    await app.enqueue("ok", queue="web")
    response = await authed.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    enqueued = families["aiojobs_pg_jobs_enqueued"].samples
    assert [(s.labels, s.value) for s in enqueued if s.name.endswith("_total")] == [
        ({"handler": "ok", "queue": "web"}, 1.0)]
    pending = [s.value for s in families["aiojobs_pg_queue_jobs"].samples
               if s.labels == {"queue": "web", "status": "pending"}]
    assert pending == [1.0]
    # OpenMetrics when asked for
    open_metrics = await authed.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.rstrip().endswith("# EOF")
    # Behind the API's credentials by default.
    refused = await anon.get("/metrics")
    assert refused.status_code == 401


@pytest.mark.parametrize("metrics_clients", [True], indirect=True)
async def test_public_metrics_need_no_token(metrics: Metrics, metrics_clients: tuple[Any, Any]) -> None:
    _authed, anon = metrics_clients
    response = await anon.get("/metrics")
    assert response.status_code == 200 and "aiojobs_pg_queue_stats_up 1.0" in response.text
    assert (await anon.get("/queues")).status_code == 401  # only /metrics is opened


async def test_metrics_route_without_instrument_says_how_to_enable(metrics_clients: tuple[Any, Any]) -> None:
    authed, _anon = metrics_clients
    response = await authed.get("/metrics")
    assert response.status_code == 404
    assert "aiojobs_pg.metrics.instrument(app)" in response.json()["message"]


# --- worker --metrics-port ---

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env(**extra: str) -> dict[str, str]:
    drop = {"AIOJOBS_PG_DSN", "DATABASE_URL", "AIOJOBS_PG_SCHEMA", "AIOJOBS_PG_LOG_LEVEL", "AIOJOBS_PG_LOG_JSON"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "PYTHONUNBUFFERED": "1", **extra}


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, ""


async def test_worker_metrics_port_serves_metrics(app: App, pg_dsn: str, schema_name: str) -> None:
    port = _free_port()
    env = _env(AIOJOBS_PG_DSN=pg_dsn, AIOJOBS_PG_SCHEMA=schema_name)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiojobs_pg", "worker", "tests.apps.cli_app:app", "--metrics-port", str(port),
        env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        await app.enqueue("echo", {"x": 1})
        body = ""

        async def completed() -> bool:
            nonlocal body
            assert proc.returncode is None, (await proc.communicate())[0].decode()
            status, body = await asyncio.to_thread(_get, url)
            return status == 200 and 'aiojobs_pg_jobs_completed_total{handler="echo",queue="default"} 1.0' in body

        await eventually(completed, timeout=30, interval=0.2, message="the worker's metrics show the job")
        # the queue gauges come from the database, read on the worker's loop for the server's thread
        assert "aiojobs_pg_queue_stats_up 1.0" in body
        assert 'aiojobs_pg_worker_concurrency{worker="' in body
        assert "process_cpu_seconds_total" in body  # the default registry's process metrics
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, out.decode()
        started = time.monotonic()
        assert await asyncio.to_thread(_get, url) == (0, "")  # the server stopped with the worker
        assert time.monotonic() - started < 10
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.communicate(), 10)


async def test_worker_metrics_flags_are_checked(pg_dsn: str) -> None:
    env = _env(AIOJOBS_PG_DSN=pg_dsn)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "aiojobs_pg", "worker", "tests.apps.cli_app:app", *args],
                              env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)

    result = await asyncio.to_thread(run, "--metrics-host", "0.0.0.0")
    assert result.returncode == 2 and "--metrics-host needs --metrics-port" in result.stderr
    result = await asyncio.to_thread(run, "--metrics-port", "70000")
    assert result.returncode == 2 and "--metrics-port" in result.stderr


async def test_a_port_in_use_is_a_clear_error(metrics: Metrics) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            metrics.start_http_server(port)
    with pytest.raises(ValidationError) as bad:
        metrics.start_http_server(65536)
    assert bad.value.field == "port"
    server = metrics.start_http_server(0)
    try:
        status, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{server.port}/metrics")
        assert status == 200 and "aiojobs_pg_queue_stats_up 1.0" in body
    finally:
        server.stop()
