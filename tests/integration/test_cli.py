"""The command line, run as subprocesses (``python -m aiojobs_pg``) against the test database.

The ``app`` fixture has migrated the test schema; the CLI gets it through
AIOJOBS_PG_DSN / AIOJOBS_PG_SCHEMA, and the assertions read it back through ``app``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from aiojobs_pg import App, JobNotFound, JobStatus
from aiojobs_pg.http.serialize import job_json
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE_DSN = "postgresql://nobody@127.0.0.1:1/nowhere"

HELP_COMMANDS = [
    [], ["worker"], ["migrate"], ["demo"], ["jobs"], ["jobs", "list"], ["jobs", "show"], ["jobs", "enqueue"],
    ["jobs", "retry"], ["jobs", "cancel"], ["jobs", "trigger"], ["jobs", "delete"],
    ["schedules"], ["schedules", "list"], ["workers"], ["queues"], ["queues", "list"], ["queues", "pause"],
    ["queues", "resume"], ["jobs", "retry-failed"], ["jobs", "cancel-pending"], ["jobs", "delete-finished"],
    ["jobs", "wait"],
]


def _base_env() -> dict[str, str]:
    drop = {"AIOJOBS_PG_DSN", "DATABASE_URL", "AIOJOBS_PG_SCHEMA", "AIOJOBS_PG_LOG_LEVEL", "AIOJOBS_PG_LOG_JSON"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def cli_env(pg_dsn: str, schema_name: str) -> dict[str, str]:
    """The environment of a CLI process pointed at the test schema."""
    return {**_base_env(), "AIOJOBS_PG_DSN": pg_dsn, "AIOJOBS_PG_SCHEMA": schema_name}


def _argv(args: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "aiojobs_pg", *args]


def run_cli_sync(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion (bounded by ``timeout``)."""
    return subprocess.run(_argv(args), env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


async def run_cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the CLI without blocking the event loop of the test."""
    return await asyncio.to_thread(run_cli_sync, env, *args, timeout=timeout)


@pytest.fixture
async def drop_schemas(pg_dsn: str) -> AsyncIterator[Callable[[str], str]]:
    """Register extra schemas (``drop(name)`` returns the name) to drop after the test."""
    names: list[str] = []

    def register(name: str) -> str:
        names.append(name)
        return name

    yield register
    conn = await asyncpg.connect(pg_dsn)
    try:
        for name in names:
            await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    finally:
        await conn.close()


# --- parsing, help, usage errors (no database involved) ---

@pytest.mark.parametrize("command", HELP_COMMANDS, ids=lambda c: " ".join(c) or "main")
def test_help_of_every_command(command: list[str]) -> None:
    result = run_cli_sync(_base_env(), *command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
    assert "--dsn" in result.stdout  # the global options are documented everywhere


@pytest.mark.parametrize("command", [
    [], ["jobs"], ["frobnicate"], ["jobs", "list", "--status", "bogus"], ["jobs", "show", "abc"],
    ["jobs", "show", "0"], ["worker"], ["worker", "x:app", "--concurrency", "0"], ["demo", "--duration", "-1"],
    ["--log-level", "loud", "jobs", "list"],
])
def test_usage_errors_exit_2(command: list[str]) -> None:
    result = run_cli_sync({**_base_env(), "AIOJOBS_PG_DSN": UNREACHABLE_DSN}, *command)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "usage:" in result.stderr or "error:" in result.stderr


def test_migrate_print_sql_needs_no_database() -> None:
    env = {**_base_env(), "AIOJOBS_PG_DSN": UNREACHABLE_DSN}
    result = run_cli_sync(env, "--schema", "some_schema", "migrate", "--print-sql")
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE" in result.stdout
    assert "some_schema.jobs" in result.stdout


def test_unreachable_database_exits_1() -> None:
    result = run_cli_sync({**_base_env(), "AIOJOBS_PG_DSN": UNREACHABLE_DSN}, "jobs", "list", timeout=60)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("error:")


# --- migrate ---

@pytest.mark.usefixtures("needs_ddl")
async def test_migrate_applies_then_reports_up_to_date(
        app: App, cli_env: dict[str, str], schema_name: str, drop_schemas: Callable[[str], str]) -> None:
    result = await run_cli(cli_env, "migrate")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout

    fresh = drop_schemas(schema_name + "_m")
    result = await run_cli(cli_env, "--schema", fresh, "migrate")
    assert result.returncode == 0, result.stderr
    assert "applied migration(s) 1" in result.stdout
    assert await app.pool.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = $1", fresh) >= 3


async def test_jobs_on_unmigrated_schema_explains(app: App, cli_env: dict[str, str], schema_name: str) -> None:
    result = await run_cli(cli_env, "--schema", schema_name + "_none", "jobs", "list")
    assert result.returncode == 1
    err = result.stderr
    assert f"schema '{schema_name}_none' in the database in $AIOJOBS_PG_DSN has no aiojobs_pg tables yet" in err
    assert "schemas there that have them: " in err  # at least the test's own, migrated by the fixture
    # The command that creates them where this one looked, not in the default schema.
    assert f"'python -m aiojobs_pg --schema {schema_name}_none migrate'" in err


# --- jobs ---

async def test_enqueue_then_list(app: App, cli_env: dict[str, str]) -> None:
    result = await run_cli(cli_env, "jobs", "enqueue", "echo", "--data", '{"n": 1, "s": "é"}', "--queue", "mail",
                           "--priority", "5", "--max-attempts", "4", "--name", "first", "--json")
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    job = await app.get_job(created["id"])
    assert (job.handler, job.data, job.queue, job.priority, job.max_attempts, job.name) == (
        "echo", {"n": 1, "s": "é"}, "mail", 5, 4, "first")
    assert job.status is JobStatus.PENDING

    result = await run_cli(cli_env, "jobs", "enqueue", "later", "--delay", "10m")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("enqueued job ")
    later_id = int(result.stdout.split()[2])
    later = await app.get_job(later_id)
    assert later.next_run_at >= later.created_at + timedelta(minutes=9)

    result = await run_cli(cli_env, "jobs", "enqueue", "tick", "--schedule", "*/5 * * * *", "--timezone",
                           "Europe/Paris", "--dedup-key", "tick-1", "--json")
    assert result.returncode == 0, result.stderr
    tick = await app.get_job(json.loads(result.stdout)["id"])
    assert (tick.schedule, tick.timezone, tick.dedup_key) == ("*/5 * * * *", "Europe/Paris", "tick-1")

    result = await run_cli(cli_env, "jobs", "list", "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert [j["id"] for j in listed] == [tick.id, later_id, job.id]  # newest first
    first = listed[-1]
    assert first["data"] == {"n": 1, "s": "é"}
    assert first["status"] == "pending"
    assert datetime.fromisoformat(first["nextRunAt"]).tzinfo is not None

    result = await run_cli(cli_env, "jobs", "list", "--queue", "mail", "--json")
    assert [j["id"] for j in json.loads(result.stdout)] == [job.id]
    result = await run_cli(cli_env, "jobs", "list", "--handler", "later", "--status", "pending", "--json")
    assert [j["id"] for j in json.loads(result.stdout)] == [later_id]

    result = await run_cli(cli_env, "jobs", "list", "--limit", "2")
    assert result.returncode == 0, result.stderr
    header, _rule, *rows, no_worker, more = result.stdout.splitlines()
    assert header.split()[:5] == ["ID", "NAME", "HANDLER", "QUEUE", "STATUS"]
    assert len(rows) == 2 and all("pending (no worker)" in row for row in rows)  # no worker runs here
    assert no_worker.startswith("(no worker: ")
    assert "--cursor" in more
    assert "0/4" not in result.stdout  # the third job is on the next page


async def test_jobs_no_live_worker_can_run_are_flagged(app: App, cli_env: dict[str, str]) -> None:
    app.validate_handlers = False

    @app.handler()
    async def served(data: None) -> None:
        await asyncio.sleep(30)

    orphan = await app.enqueue("orphan")
    waiting = await app.enqueue("served", queue="other")  # a handler some worker has, on a queue it does not serve
    async with app.worker(queues=["default"]) as worker:
        await asyncio.wait_for(worker.signals.wait("renew", 1), 10)  # registered, with its handlers
        listed = await run_cli(cli_env, "jobs", "list")
        assert listed.returncode == 0, listed.stderr
        lines = {line.split()[0]: line for line in listed.stdout.splitlines() if line.split()[:1] != []}
        assert "pending (no worker)" in lines[str(orphan.id)] and "pending (no worker)" in lines[str(waiting.id)]
        as_json = json.loads((await run_cli(cli_env, "jobs", "list", "--json")).stdout)
        assert {j["id"]: j["noWorker"] for j in as_json} == {orphan.id: True, waiting.id: True}
        shown = await run_cli(cli_env, "workers", "--json")
        report = json.loads(shown.stdout)
        [me] = report["workers"]
        assert me["id"] == worker.id and me["handlers"] == ["served"] and me["alive"] is True
        assert report["unserved"] == [{"queue": "default", "handler": "orphan", "count": 1},
                                      {"queue": "other", "handler": "served", "count": 1}]
        text = (await run_cli(cli_env, "workers")).stdout
        assert worker.id in text and "pending jobs no live worker can run" in text
    # The worker deregistered as it stopped: with none alive, every pending job is unserved.
    assert await app.admin().unserved() == {("default", "orphan"): 1, ("other", "served"): 1}


async def test_jobs_wait_prints_the_result_or_fails(app: App, cli_env: dict[str, str]) -> None:
    @app.handler()
    async def double(data: int) -> int:
        return data * 2

    @app.handler()
    async def broken(data: None) -> None:
        raise RuntimeError("no luck")

    done, failed = await app.enqueue("double", 21), await app.enqueue("broken", max_attempts=1)
    later = await app.enqueue("double", 1, delay=3600)
    waiting = asyncio.create_task(run_cli(cli_env, "jobs", "wait", str(done.id), "--timeout", "30"))
    # The CLI is waiting (listening, and has marked the job) before any worker runs it.
    await eventually(lambda: _awaited(app, done.id), timeout=30, message="the CLI never started waiting")
    await app.run_worker(burst=True, handle_signals=False)
    result = await waiting
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == 42
    refused = await run_cli(cli_env, "jobs", "wait", str(failed.id))
    assert refused.returncode == 1 and "failed after 1 attempt(s): RuntimeError: no luck" in refused.stderr
    late = await run_cli(cli_env, "jobs", "wait", str(later.id), "--timeout", "0.5")
    assert late.returncode == 1 and "did not finish within 0.5" in late.stderr


async def _awaited(app: App, job_id: int) -> bool:
    """Whether a wait marked the job (it does so once its listener is up, before it reads the job)."""
    return bool(await app.pool.fetchval(f"SELECT awaited FROM {app.schema}.jobs WHERE id = $1", job_id))


async def test_queues_pause_resume_and_bulk_actions(app: App, cli_env: dict[str, str]) -> None:
    app.validate_handlers = False
    for _ in range(2):
        await app.enqueue("send", queue="mail")
    paused = await run_cli(cli_env, "queues", "pause", "mail")
    assert paused.returncode == 0 and "paused" in paused.stdout
    assert await app.admin().paused_queues() == ["mail"]
    [listed] = json.loads((await run_cli(cli_env, "queues", "list", "--json")).stdout)
    assert (listed["queue"], listed["paused"], listed["counts"]["pending"], listed["total"]) == ("mail", True, 2, 2)
    assert listed["noWorker"] == {"send": 2}  # GET /queues' shape, camelCase
    assert "paused" in (await run_cli(cli_env, "queues", "list")).stdout
    assert (await run_cli(cli_env, "queues", "resume", "mail")).returncode == 0
    assert await app.admin().paused_queues() == []

    cancelled = await run_cli(cli_env, "jobs", "cancel-pending", "--queue", "mail", "--json")
    assert json.loads(cancelled.stdout) == {"count": 2}
    deleted = await run_cli(cli_env, "jobs", "delete-finished", "--older-than", "0s")
    assert deleted.returncode == 0 and "deleted 2 job(s)" in deleted.stdout
    bad = await run_cli(cli_env, "jobs", "delete-finished", "--older-than", "soon")
    assert bad.returncode != 0 and "older_than" in bad.stderr


async def test_enqueue_rejects_bad_input_and_writes_nothing(app: App, cli_env: dict[str, str]) -> None:
    result = await run_cli(cli_env, "jobs", "enqueue", "echo", "--data", "{not json")
    assert result.returncode == 1
    assert "error: --data is not valid JSON" in result.stderr

    result = await run_cli(cli_env, "jobs", "enqueue", "echo", "--delay", "soon")
    assert result.returncode == 1
    assert "error: delay:" in result.stderr

    result = await run_cli(cli_env, "jobs", "enqueue", "echo", "--timezone", "UTC")
    assert result.returncode == 1
    assert "timezone" in result.stderr
    assert await app.list_jobs() == []


async def test_chain_and_group(app: App, cli_env: dict[str, str]) -> None:
    result = await run_cli(cli_env, "jobs", "chain", "--step", '{"handler": "echo", "data": 1}',
                           "--step", '{"handler": "echo", "data": 2, "maxAttempts": 5}', "--json")
    assert result.returncode == 0, result.stderr
    first, second = json.loads(result.stdout)
    assert (second["status"], second["parents"], second["maxAttempts"]) == ("waiting", [first["id"]], 5)

    result = await run_cli(cli_env, "jobs", "group", "--member", '{"handler": "echo"}', "--member",
                           '{"handler": "echo"}', "--then", '{"handler": "echo", "data": "all"}')
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("enqueued a group of 2: ") and result.stdout.rstrip().endswith("waiting")

    result = await run_cli(cli_env, "jobs", "chain", "--step", '{"handler": "echo"}', "--step", "{nope")
    assert result.returncode == 1 and "error: --step[1] is not valid JSON" in result.stderr
    result = await run_cli(cli_env, "jobs", "chain", "--step", '{"handler": "echo", "priority": "high"}')
    assert result.returncode == 1 and "steps[0].priority: must be an integer" in result.stderr
    assert len(await app.list_jobs()) == 5


async def test_show(app: App, cli_env: dict[str, str]) -> None:
    job = await app.enqueue("echo", {"k": [1, 2]}, name="shown", delay=3600)

    result = await run_cli(cli_env, "jobs", "show", str(job.id), "--history", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert (shown["id"], shown["name"], shown["data"], shown["history"]) == (job.id, "shown", {"k": [1, 2]}, [])
    # The HTTP API's job, field for field: camelCase, times in UTC with a Z.
    api_job = job_json(await app.get_job(job.id), served=await app.admin().served())
    assert shown.keys() == api_job.keys() | {"history"}
    assert not [key for key in shown if "_" in key]
    assert (shown["maxAttempts"], shown["nextRunAt"]) == (api_job["maxAttempts"], api_job["nextRunAt"])

    result = await run_cli(cli_env, "jobs", "show", str(job.id))
    assert result.returncode == 0, result.stderr
    assert "handler:" in result.stdout
    assert "shown" in result.stdout
    assert '{"k": [1, 2]}' in result.stdout


async def test_unknown_job_exits_1(app: App, cli_env: dict[str, str]) -> None:
    actions = ("show", "cancel", "retry", "trigger", "delete")
    # Side by side: each one is refused, so none changes what another sees.
    results = await asyncio.gather(*(run_cli(cli_env, "jobs", action, "987654") for action in actions))
    for action, result in zip(actions, results, strict=True):
        assert result.returncode == 1, (action, result.stderr)
        assert result.stderr.strip() == "error: job 987654 not found"


async def test_cancel_retry_trigger_delete(app: App, cli_env: dict[str, str]) -> None:
    job = await app.enqueue("echo", {"x": 1}, delay=3600)

    result = await run_cli(cli_env, "jobs", "cancel", str(job.id))
    assert result.returncode == 0, result.stderr
    assert (await app.get_job(job.id)).status is JobStatus.CANCELLED

    result = await run_cli(cli_env, "jobs", "cancel", str(job.id))
    assert result.returncode == 1
    assert f"error: cannot cancel job {job.id}: it is cancelled" in result.stderr

    result = await run_cli(cli_env, "jobs", "retry", str(job.id), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "pending"
    assert (await app.get_job(job.id)).status is JobStatus.PENDING

    result = await run_cli(cli_env, "jobs", "retry", str(job.id))
    assert result.returncode == 1
    assert "cannot retry" in result.stderr

    await app.update_job(job.id, run_at=datetime.now(UTC) + timedelta(hours=1))
    result = await run_cli(cli_env, "jobs", "trigger", str(job.id))
    assert result.returncode == 0, result.stderr
    triggered = await app.get_job(job.id)
    assert triggered.status is JobStatus.PENDING
    assert triggered.next_run_at <= datetime.now(UTC) + timedelta(seconds=5)

    result = await run_cli(cli_env, "jobs", "delete", str(job.id))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"deleted job {job.id}"
    with pytest.raises(JobNotFound):
        await app.get_job(job.id)


# --- worker ---

async def test_worker_burst_runs_jobs_and_exits(app: App, cli_env: dict[str, str]) -> None:
    echoes = [await app.enqueue("echo", {"i": i}) for i in range(3)]
    doomed = await app.enqueue("boom", "x", max_attempts=1)

    result = await run_cli(cli_env, "worker", "tests.apps.cli_app:app", "--burst", "--concurrency", "2", timeout=60)
    assert result.returncode == 0, result.stderr
    for job in echoes:
        done = await app.get_job(job.id)
        assert done.status is JobStatus.COMPLETED
        assert done.result == job.data
    failed = await app.get_job(doomed.id)
    assert failed.status is JobStatus.FAILED
    assert failed.last_error is not None
    assert "RuntimeError: boom" in failed.last_error


async def test_worker_flags_override_environment(
        app: App, pg_dsn: str, schema_name: str, drop_schemas: Callable[[str], str]) -> None:
    # The App reads the environment; --dsn and --schema must win over it.
    env = {**_base_env(), "AIOJOBS_PG_DSN": UNREACHABLE_DSN,
           "AIOJOBS_PG_SCHEMA": drop_schemas(schema_name + "_other")}
    job = await app.enqueue("echo", "hi", queue="q2")
    result = await run_cli(env, "--dsn", pg_dsn, "worker", "tests.apps.cli_app:app", "--schema", schema_name,
                           "--queues", "default, q2", "--burst", timeout=60)
    assert result.returncode == 0, result.stderr
    assert (await app.get_job(job.id)).status is JobStatus.COMPLETED


@pytest.mark.parametrize(("target", "message"), [
    ("tests.apps.missing_module:app", "cannot import module 'tests.apps.missing_module'"),
    ("tests.apps.cli_app:missing", "has no attribute 'missing'"),
    ("tests.apps.cli_app:not_an_app", "not an aiojobs_pg.App"),
    ("tests.apps.cli_app", "expected MODULE:ATTRIBUTE"),
    ("tests/apps/cli_app.py:app", "give the module, not the file: tests.apps.cli_app:app"),
])
def test_worker_bad_target(target: str, message: str) -> None:
    result = run_cli_sync({**_base_env(), "AIOJOBS_PG_DSN": UNREACHABLE_DSN}, "worker", target)
    assert result.returncode == 2
    assert message in result.stderr


async def test_worker_stops_on_sigterm(app: App, cli_env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *_argv(("worker", "tests.apps.cli_app:app")), env=cli_env, cwd=ROOT,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # The worker's heartbeat row appears once it runs (its signal handlers are installed by then).
        deadline = time.monotonic() + 30
        while not await app.admin().workers():
            assert proc.returncode is None, await asyncio.wait_for(proc.communicate(), 10)
            assert time.monotonic() < deadline, "the worker did not start within 30 s"
            await asyncio.sleep(0.1)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, err.decode()
        assert time.monotonic() - sent < 10
        assert await app.admin().workers() == []  # it removed its row on the way out
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.communicate(), 10)


def _read_a_line_then_close(env: dict[str, str], *args: str) -> tuple[int, bytes, bytes]:
    """Run the CLI, read the first line of its output, then close the pipe as ``| head -1`` does."""
    proc = subprocess.Popen(_argv(args), env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    return proc.wait(timeout=60), first, err


async def test_output_closed_early_ends_quietly(app: App, cli_env: dict[str, str]) -> None:
    # Far more JSON than a pipe holds, so that the CLI is still writing when its reader goes.
    app.validate_handlers = False
    await app.enqueue_many([{"handler": "echo", "data": {"pad": "x" * 500, "i": i}} for i in range(400)])
    code, first, err = await asyncio.to_thread(_read_a_line_then_close, cli_env, "jobs", "list", "--json",
                                               "--limit", "400")
    assert first == b"[\n"
    assert err == b""  # no "cannot reach the database: BrokenPipeError", no traceback
    assert code == 128 + signal.SIGPIPE  # what a shell reports for a tool that SIGPIPE ended


# --- demo ---

@pytest.mark.usefixtures("needs_ddl")
async def test_demo_stops_when_done_and_a_second_one_in_its_schema_refuses(
        app: App, cli_env: dict[str, str], schema_name: str, drop_schemas: Callable[[str], str]) -> None:
    schema = drop_schemas(schema_name + "_demo")
    first = await asyncio.create_subprocess_exec(
        *_argv(("--schema", schema, "demo", "--duration", "90")), env=cli_env, cwd=ROOT,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert first.stdout is not None
    try:
        head = b""
        while b"enqueued" not in head:  # the first demo holds the schema from before it enqueues
            line = await asyncio.wait_for(first.stdout.readline(), 60)
            assert line, (head, await first.communicate())
            head += line
        second = await run_cli(cli_env, "--schema", schema, "demo")
        assert second.returncode == 1, second.stdout
        assert f"another demo is running in schema '{schema}'" in second.stderr
        assert f"--schema {schema}_2" in second.stderr
        rest, err = await asyncio.wait_for(first.communicate(), 90)
    finally:
        if first.returncode is None:
            first.kill()
            await first.communicate()
    out = (head + rest).decode()
    assert first.returncode == 0, err.decode()
    assert "stopped: every one-off job has finished and the recurring one has run" in out  # not after 90 s
    assert "not found" not in out + err.decode()  # the second run cleared nothing of the first's
    # Not a table a second: a line per change (no terminal here), then one table.
    assert re.search(r"s  job \d+ inventory sync \(fails twice\): completed \(attempt 3/5\)", out), out
    assert out.count("ATTEMPTS") == 1
    assert "summary:" in out and "history of job" in out
    assert "job_completed" not in out + err.decode()  # the worker's info logs stay out of the way


def _run_in_terminal(env: dict[str, str], *args: str, timeout: float = 90) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as its stdin, stdout and stderr; returns its exit code and output."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(_argv(args), env={**env, "TERM": "xterm", "COLUMNS": "120"}, cwd=ROOT,
                            stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        return proc.wait(timeout=10), b"".join(chunks).decode()
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.usefixtures("needs_ddl")
async def test_demo_redraws_one_table_in_place_on_a_terminal(
        cli_env: dict[str, str], schema_name: str, drop_schemas: Callable[[str], str]) -> None:
    schema = drop_schemas(schema_name + "_tty")
    code, out = await asyncio.to_thread(_run_in_terminal, cli_env, "--schema", schema, "demo")
    assert code == 0, out
    redraws = out.count("\x1b[J")
    # Each look after the first goes back over the table drawn before (ANSI: up N lines, clear).
    assert redraws >= 3 and out.count("ATTEMPTS") == redraws + 1, out
    final = out[out.rindex("\x1b[J"):]
    assert "inventory sync (fails twice)  completed" in final
    assert "inventory service unavailable" not in final.split("stopped:")[0]  # completed: no old error shown
    assert "stopped: every one-off job has finished" in out


async def test_schedules_list_shows_next_runs_and_stale_declarations(app: App, cli_env: dict[str, str]) -> None:
    job = await app.enqueue("report", schedule="0 9 * * MON", timezone="Europe/Paris", name="weekly report")
    await app.pool.execute(
        f"INSERT INTO {app.schema}.jobs (handler, schedule, timezone, periodic_key, name) "
        "VALUES ('old', '1h', 'UTC', 'removed-key', 'removed-key')")
    result = await run_cli(cli_env, "schedules", "list", "--json", "tests.apps.sched_app:app")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    by_name = {s["name"]: s for s in listing["schedules"]}
    runs = by_name["weekly report"]["nextRuns"]
    assert len(runs) == 5
    # Mondays 09:00 in Paris are 08:00 or 07:00 UTC, one week apart.
    stamps = [datetime.fromisoformat(r.replace("Z", "+00:00")) for r in runs]
    assert all(b - a == timedelta(days=7) or abs((b - a) - timedelta(days=7)) == timedelta(hours=1)
               for a, b in itertools.pairwise(stamps))
    assert stamps[0] == job.next_run_at
    assert by_name["removed-key"]["note"] == "no longer declared"
    assert sorted(listing["declaredButNotCreated"]) == ["cron-second", "every-second"]
    table = await run_cli(cli_env, "schedules", "list")
    assert table.returncode == 0 and "weekly report" in table.stdout and "0 9 * * MON" in table.stdout
