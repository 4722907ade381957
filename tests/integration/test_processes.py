"""Process-level tests: real worker processes (``python -m tests.apps.proc_app``) on one schema.

Every test synchronises on database state with bounded polling. Worker processes
are started by the ``procs`` fixture, which kills whatever is still alive (by the
pids it started) and prints each process's output at teardown, so a failing
test shows what the workers said.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import anyio
import asyncpg
import pytest

from aiojobs_pg import App, Job
from tests.helpers import eventually, spawn_python

#: lease of the worker processes (seconds): short, so that a dead worker's jobs are rescued quickly
LEASE = 2.0


class Procs:
    """Starts worker processes on the test's schema and cleans them up."""

    def __init__(self, tmp_path: Path, dsn: str, schema: str) -> None:
        self.tmp_path = tmp_path
        self.dsn = dsn
        self.schema = schema
        self.started: list[tuple[subprocess.Popen[bytes], Path, IO[bytes]]] = []
        self.logs: dict[int, Path] = {}

    def handled_signal(self, proc: subprocess.Popen[bytes]) -> bool:
        """Whether the worker has logged the signal (from then on it claims nothing)."""
        return "signal_received" in self.logs[proc.pid].read_text(errors="replace")

    def start(self, concurrency: int, *, lease: float = LEASE, drain: float = 30.0, pool: int = 10,
              queues: list[str] | None = None) -> subprocess.Popen[bytes]:
        env_vars = {"AIOJOBS_PG_DSN": self.dsn, "AIOJOBS_PG_SCHEMA": self.schema, "PROC_LEASE": str(lease),
                    "PROC_DRAIN": str(drain), "PROC_POOL": str(pool)}
        args = ["--concurrency", str(concurrency)]
        if queues:
            args += ["--queues", *queues]
        log_path = self.tmp_path / f"worker-{len(self.started)}.log"
        proc, out, _ = spawn_python("tests.apps.proc_app", args, env_vars, log_path)
        self.started.append((proc, log_path, out))
        self.logs[proc.pid] = log_path
        return proc

    def cleanup(self) -> None:
        """SIGTERM whatever is alive, SIGKILL what did not stop within 5 s (our own pids only)."""
        alive = [proc for proc, _, _ in self.started if proc.poll() is None]
        for proc in alive:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in alive:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for _, _, out in self.started:
            out.close()

    def dump(self) -> None:
        """Print every process's output (pytest shows it for failing tests)."""
        for proc, log_path, _ in self.started:
            text = log_path.read_text(errors="replace")
            print(f"----- worker pid {proc.pid} exit {proc.returncode} ({log_path.name}) -----")
            print(text[-20_000:] or "(no output)")


@pytest.fixture
def procs(app: App, pg_dsn: str, tmp_path: Path) -> Iterator[Procs]:
    # Depends on ``app``, so the processes are gone before ``app`` drops the schema.
    p = Procs(tmp_path, pg_dsn, app.schema)
    try:
        yield p
    finally:
        p.cleanup()
        p.dump()


@pytest.fixture
async def ledger(app: App, pg_owner_dsn: str) -> str:
    """The table the ``record`` handler writes to; returns its qualified name."""
    table = f"{app.schema}.ledger"
    owner = await asyncpg.connect(pg_owner_dsn)  # DDL: the schema owner, not the app's role
    try:
        await owner.execute(f"CREATE TABLE {table} (job_id bigint, attempt int, pid int, "
                            "started_at timestamptz, finished_at timestamptz)")
    finally:
        await owner.close()
    return table


async def count(app: App, sql: str, *args: Any) -> int:
    value = await app.pool.fetchval(sql.replace("{schema}", app.schema), *args)
    return int(value)


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float, message: str) -> float:
    """Wait (bounded) for ``proc`` to exit; returns how long it took."""
    t0 = time.monotonic()
    await eventually(lambda: proc.poll() is not None, timeout=timeout, interval=0.02, message=message)
    return time.monotonic() - t0


async def statuses(app: App, ids: list[int]) -> dict[int, Job]:
    """These jobs (completed ones from their history row) by id."""
    return {job.id: job for job in await app.queries.get_jobs(app.pool, ids)}


# Completed one-off jobs live in their history rows (migration 0006): all_jobs reads both tables.
COMPLETED = "SELECT count(*) FROM {schema}.all_jobs WHERE status = 'completed'"


# --- 1. exactly once across processes ---

async def test_exactly_once_across_three_processes(app: App, procs: Procs, ledger: str) -> None:
    workers = [procs.start(20, lease=10) for _ in range(3)]
    pids = {w.pid for w in workers}
    # All three are claiming before any job exists, so that one fast starter cannot take everything.
    registered = "SELECT count(DISTINCT pid) FROM {schema}.workers WHERE pid = ANY($1)"

    async def all_registered() -> bool:
        for w in workers:
            assert w.poll() is None, f"worker {w.pid} died with exit code {w.returncode}"
        return await count(app, registered, list(pids)) == 3

    await eventually(all_registered, timeout=20, interval=0.05, message="the 3 workers did not register")

    n = 3000
    jobs = await app.enqueue_many([{"handler": "record", "data": {"i": i}} for i in range(n)])
    assert len(jobs) == n

    async def all_done() -> bool:
        for w in workers:
            assert w.poll() is None, f"worker {w.pid} died with exit code {w.returncode}"
        return await count(app, COMPLETED) == n

    await eventually(all_done, timeout=60, interval=0.2, message="3000 jobs not all completed within 60 s")

    assert await count(app, "SELECT count(*) FROM {schema}.jobs") == 0
    assert await count(app, COMPLETED + " AND attempts <> 1") == 0
    dupes = await app.pool.fetch(f"SELECT job_id, count(*) FROM {ledger} GROUP BY job_id HAVING count(*) > 1")
    assert dupes == []
    assert await count(app, f"SELECT count(*) FROM {ledger}") == n
    assert await count(app, f"SELECT count(DISTINCT job_id) FROM {ledger}") == n
    assert await count(app, f"SELECT count(*) FROM {ledger} WHERE finished_at IS NULL OR attempt <> 1") == 0
    # One history row per job, completed.
    assert await count(app, "SELECT count(*) FROM {schema}.job_runs WHERE status = 'completed'") == n
    assert await count(app, "SELECT count(*) FROM {schema}.job_runs") == n
    worked = {r["pid"]: r["n"] for r in await app.pool.fetch(f"SELECT pid, count(*) AS n FROM {ledger} GROUP BY pid")}
    assert set(worked) <= pids
    assert len(worked) > 1, f"only one process did work: {worked}"


# --- 2. SIGKILL mid-job ---

async def test_sigkill_mid_job_is_rescued_and_rerun_by_another_process(app: App, procs: Procs, ledger: str) -> None:
    first = procs.start(10)
    jobs = await app.enqueue_many([{"handler": "record", "data": {"sleep_first_attempt": 30}} for _ in range(10)])
    ids = [j.id for j in jobs]
    started = f"SELECT count(*) FROM {ledger} WHERE pid = $1 AND attempt = 1 AND finished_at IS NULL"

    async def all_started() -> bool:
        assert first.poll() is None, f"first worker died with exit code {first.returncode}"
        return await count(app, started, first.pid) == 10

    await eventually(all_started, timeout=15, interval=0.05, message="the 10 jobs did not all start in the worker")

    os.kill(first.pid, signal.SIGKILL)
    await wait_exit(first, 5, "the SIGKILLed worker did not die")
    assert first.returncode == -signal.SIGKILL
    # Nothing finished the jobs: they are still running under the dead worker's lease.
    assert {r.status for r in (await statuses(app, ids)).values()} == {"running"}

    t0 = time.monotonic()
    second = procs.start(10)

    async def all_completed() -> bool:
        assert second.poll() is None, f"second worker died with exit code {second.returncode}"
        return all(r.status == "completed" for r in (await statuses(app, ids)).values())

    # Lease (2 s) + maintenance (0.5 s) + backoff (~1 s) + start-up, with margin.
    await eventually(all_completed, timeout=20, interval=0.1, message="rescued jobs not completed within 20 s")
    print(f"rescued and completed in {time.monotonic() - t0:.2f} s after the second worker started")

    rows = await statuses(app, ids)
    assert len(rows) == 10
    for job_id in ids:
        assert rows[job_id].attempts == 2
        history = await app.job_history(job_id)
        assert [(r.attempt, r.status.value) for r in history] == [(1, "failed"), (2, "completed")], history
        assert history[0].error is not None and "worker lost" in history[0].error
        assert history[1].worker_id is not None and f":{second.pid}:" in history[1].worker_id
        runs = await app.pool.fetch(
            f"SELECT attempt, pid, finished_at FROM {ledger} WHERE job_id = $1 ORDER BY attempt", job_id)
        assert [(r["attempt"], r["pid"], r["finished_at"] is not None) for r in runs] == [
            (1, first.pid, False), (2, second.pid, True)]



# --- 3. graceful SIGTERM ---

async def _start_four(app: App, procs: Procs, drain: float) -> tuple[subprocess.Popen[bytes], list[int], list[int]]:
    worker = procs.start(5, drain=drain)
    jobs = await app.enqueue_many(
        [{"handler": "sleepy", "data": {"sleep": 1.0}} for _ in range(2)]
        + [{"handler": "sleepy", "data": {"sleep": 60}} for _ in range(2)])
    short, long = [j.id for j in jobs[:2]], [j.id for j in jobs[2:]]

    async def four_running() -> bool:
        assert worker.poll() is None, f"worker died with exit code {worker.returncode}"
        return await count(app, "SELECT count(*) FROM {schema}.jobs WHERE status = 'running'") == 4

    await eventually(four_running, timeout=15, interval=0.01, message="the 4 jobs were not running together")
    return worker, short, long


async def test_sigterm_drains_then_releases_and_claims_nothing_new(app: App, procs: Procs) -> None:
    drain = 2.0
    worker, short, long = await _start_four(app, procs, drain)

    signalled_at = datetime.now(UTC)
    os.kill(worker.pid, signal.SIGTERM)
    t0 = time.monotonic()
    await eventually(lambda: procs.handled_signal(worker), timeout=5, interval=0.01,
                     message="the worker never logged the signal")
    late = [j.id for j in await app.enqueue_many([{"handler": "sleepy", "data": {"sleep": 0.1}} for _ in range(5)])]

    await eventually(lambda: worker.poll() is not None, timeout=drain + 3, interval=0.02,
                     message=f"worker did not exit within drain + 3 s ({drain + 3} s)")
    elapsed = time.monotonic() - t0
    assert worker.returncode == 0
    # It waited for the drain: the long jobs held it until the drain timeout.
    assert elapsed >= drain - 0.3, f"exited after {elapsed:.2f} s, before the drain timeout"

    rows = await statuses(app, short + long + late)
    for job_id in short:
        assert rows[job_id].status == "completed"
        history = await app.job_history(job_id)
        assert [r.status.value for r in history] == ["completed"]
        # Still running when the signal came: the drain let it finish.
        assert history[0].completed_at is not None and history[0].completed_at > signalled_at
    for job_id in long:
        assert rows[job_id].status == "pending"
        assert rows[job_id].attempts == 0
        history = await app.job_history(job_id)
        assert [(r.attempt, r.status.value) for r in history] == [(1, "released")]
    for job_id in late:
        assert rows[job_id].status == "pending"
        assert rows[job_id].attempts == 0
        assert await app.job_history(job_id) == []
    assert await count(app, "SELECT count(*) FROM {schema}.jobs WHERE status = 'running'") == 0
    assert await count(app, "SELECT count(*) FROM {schema}.workers") == 0


# --- 4. a second signal stops at once ---

async def test_second_sigterm_stops_at_once(app: App, procs: Procs) -> None:
    worker, short, long = await _start_four(app, procs, drain=30.0)

    os.kill(worker.pid, signal.SIGTERM)
    # The second signal comes during the (30 s) drain: once the worker has handled the first.
    await eventually(lambda: procs.handled_signal(worker), timeout=5, interval=0.01,
                     message="the worker never logged the first signal")
    assert worker.poll() is None, "the worker left before the drain timeout with 60 s jobs running"
    os.kill(worker.pid, signal.SIGTERM)
    elapsed = await wait_exit(worker, 3, "worker did not exit within 3 s of the second signal")
    print(f"exited {elapsed:.2f} s after the second signal, code {worker.returncode}")
    assert worker.returncode == 0

    now = await app.pool.fetchval("SELECT now()")
    rows = await statuses(app, short + long)
    for job_id in short + long:
        row = rows[job_id]
        released = row.status == "pending" and row.attempts == 0
        if job_id in short:
            assert released or row.status == "completed", row
            continue
        # The final flush handed the job back; or, if it was cut short, the lease runs out soon.
        left_to_lease = (row.status == "running" and row.lease_expires_at is not None
                         and row.lease_expires_at <= now + timedelta(seconds=LEASE))
        assert released or left_to_lease, row
        if released:
            assert [(r.attempt, r.status.value) for r in await app.job_history(job_id)] == [(1, "released")]
    running = await count(app, "SELECT count(*) FROM {schema}.jobs WHERE status = 'running' "
                               "AND (lease_expires_at IS NULL OR lease_expires_at > now() + make_interval(secs => $1))",
                          LEASE)
    assert running == 0


# --- 5. a poison job that kills its worker ---

async def test_poison_job_fails_after_max_attempts_and_others_complete(app: App, procs: Procs, ledger: str) -> None:
    poison = await app.enqueue("suicide", max_attempts=2)
    others = [j.id for j in await app.enqueue_many(
        [{"handler": "record", "data": {"sleep": 0.05}, "max_attempts": 5} for _ in range(50)])]

    async def done() -> bool:
        job = await app.get_job(poison.id)
        completed = await count(app, COMPLETED + " AND id = ANY($1)", others)
        return job.status == "failed" and completed == 50

    worker = procs.start(5)
    deaths: list[int] = []
    deadline = time.monotonic() + 45
    while not await done():
        assert time.monotonic() < deadline, "poison job not failed / others not completed within 45 s"
        if worker.poll() is not None:
            deaths.append(worker.returncode)
            assert len(deaths) <= 6, f"too many restarts: exit codes {deaths}"
            worker = procs.start(5)
        await anyio.sleep(0.1)

    # Each attempt of the poison job killed one process, and nothing else did.
    assert deaths == [1, 1], deaths
    job = await app.get_job(poison.id)
    assert job.status == "failed" and job.attempts == 2
    history = await app.job_history(poison.id)
    assert [(r.attempt, r.status.value) for r in history] == [(1, "failed"), (2, "failed")]
    assert all(r.error is not None and "worker lost" in r.error for r in history)
    assert await count(app, COMPLETED + " AND id = ANY($1)", others) == 50
    assert await count(app, f"SELECT count(DISTINCT job_id) FROM {ledger} WHERE finished_at IS NOT NULL") == 50

