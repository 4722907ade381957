"""``serve``: the API and dashboard under uvicorn in a process of their own; and the dashboard's files."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from aiojobs_pg import App
from aiojobs_pg.cli.serve import add_serve_arguments
from aiojobs_pg.http.auth import ENV_TOKEN
from tests.helpers import eventually
from tests.http.conftest import ADMIN_TOKEN, bearer

ROOT = Path(__file__).resolve().parents[2]
# what the CLI's "serve" command does, without depending on cli.py wiring it up
LAUNCH = ("import argparse, sys\n"
          "from aiojobs_pg.cli.serve import add_serve_arguments, serve_command\n"
          "parser = argparse.ArgumentParser()\n"
          "add_serve_arguments(parser)\n"
          "sys.exit(serve_command(parser.parse_args()))\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", LAUNCH, *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_defaults_bind_to_localhost() -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(["pkg.mod:app"])
    assert (args.host, args.port, args.with_worker, args.concurrency, args.queues) == (
        "127.0.0.1", 8000, False, 10, "default")


async def test_serve_with_worker_runs_jobs_and_drains_on_sigterm(app: App, pg_dsn: str) -> None:
    port = free_port()
    env = {**os.environ, "AIOJOBS_PG_DSN": pg_dsn, "AIOJOBS_PG_SCHEMA": app.schema, ENV_TOKEN: ADMIN_TOKEN}
    proc = serve(["tests.http.serve_app:app", "--port", str(port), "--with-worker", "--concurrency", "2"], env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=bearer(), timeout=5) as c:
            async def healthy() -> bool:
                try:
                    response = await c.get("/health")
                except httpx.TransportError:
                    assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                    return False
                return response.status_code == 200 and response.json()["listener"] is True

            await eventually(healthy, timeout=20, interval=0.1)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as anon:
                assert (await anon.get("/jobs")).status_code == 401
                dashboard = await anon.get("/dashboard")
                assert dashboard.status_code == 401 and "text/html" in dashboard.headers["content-type"]
            runner = (await c.get("/jobs/runner")).json()
            assert runner["running"] and runner["workers"][0]["concurrency"] == 2
            job = (await c.post("/jobs", json={"handler": "echo", "data": {"via": "serve"}})).json()

            async def completed() -> bool:
                return (await c.get(f"/jobs/{job['id']}")).json()["status"] == "completed"

            await eventually(completed, timeout=10)
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so that the exit status tells it
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.stdout.read() if proc.stdout else ""
    assert f"dashboard: http://127.0.0.1:{port}/dashboard; sign in with the token in $AIOJOBS_PG_API_TOKEN" in output
    assert "Application shutdown complete" in output
    assert await app.admin().workers() == []  # the worker drained and deregistered


def test_serve_refuses_to_start_without_a_token(pg_dsn: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV_TOKEN}
    proc = serve(["tests.http.serve_app:app", "--port", str(free_port())], {**env, "AIOJOBS_PG_DSN": pg_dsn})
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0
    # Advice for a shell, not for Python code (no "tokens=").
    assert f'export {ENV_TOKEN}="$(python -c' in output and "tokens=" not in output


async def test_dashboard_files_and_headers(client: httpx.AsyncClient) -> None:
    page = await client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "same-origin"
    assert "<script" in page.text
    script = await client.get("/static/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert not re.search(r"innerHTML\s*=|outerHTML|insertAdjacentHTML|document\.write", script.text)
    assert "textContent" in script.text
    assert (await client.get("/static/app.css")).headers["content-type"].startswith("text/css")
    for missing in ("/static/index.html", "/static/../api.py", "/static/nope.js"):
        assert (await client.get(missing)).status_code == 404
    root = await client.get("/")
    assert root.status_code == 307 and root.headers["location"] == "/dashboard"
