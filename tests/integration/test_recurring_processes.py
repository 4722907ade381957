"""Recurring jobs across worker processes: every tick runs exactly once; a killed run's tick still completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from aiojobs_pg import App, JobStatus, RunStatus
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[2]
#: seconds (ticks of each schedule) watched while the four workers compete
WINDOW = 11


@pytest.fixture
def spawn(pg_dsn: str, schema_name: str, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def start_worker(procs: list[subprocess.Popen[bytes]], pg_dsn: str, schema: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AIOJOBS_PG_DSN": pg_dsn, "AIOJOBS_PG_SCHEMA": schema}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tests.apps.sched_app"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    procs.append(proc)
    return proc


async def test_every_tick_runs_exactly_once_across_four_processes(
        app: App, pg_dsn: str, schema_name: str, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]) -> None:
    for i in range(4):
        start_worker(spawn, pg_dsn, schema_name, tmp_path / f"worker{i}.log")

    async def declared() -> bool:
        return len(await app.admin().recurring()) == 2

    async def all_up() -> bool:
        return len(await app.admin().workers()) == 4

    await eventually(declared, timeout=20)
    await eventually(all_up, timeout=20)
    start = await app.pool.fetchval("SELECT now()")
    first = start.replace(microsecond=0) + timedelta(seconds=2)  # after start-up
    last = first + timedelta(seconds=WINDOW)

    async def window_ran() -> bool:  # each schedule completed a tick at the end of the window, or later
        for job in await app.admin().recurring():
            runs = await app.job_history(job.id)
            if not any(r.status is RunStatus.COMPLETED and r.scheduled_at >= last for r in runs):
                return False
        return True

    await eventually(window_ran, timeout=WINDOW + 20, interval=0.2, message="the window's last tick never ran")
    assert len(await app.admin().workers()) == 4, "all four workers competed for the whole window"
    for p in spawn:
        p.send_signal(signal.SIGTERM)
    for p in spawn:
        assert p.wait(20) == 0, (tmp_path / "worker0.log").read_text()[-3000:]

    for job in await app.admin().recurring():
        runs = [r for r in await app.job_history(job.id) if r.status is RunStatus.COMPLETED]
        ticks = Counter(r.scheduled_at for r in runs)
        doubled = [t for t, n in ticks.items() if n > 1]
        assert not doubled, f"{job.periodic_key}: ticks run twice: {doubled}"
        # Every whole second of the window ran once: a schedule's next tick is set when its run completes,
        # so with the tick at ``last`` done, each tick before it is done too.
        expected = {first + timedelta(seconds=k) for k in range(WINDOW + 1)}
        missing = sorted(expected - set(ticks))
        assert not missing, f"{job.periodic_key}: ticks that never ran: {missing}"


async def test_killed_run_of_a_tick_completes_once_by_rescue(
        app: App, pg_dsn: str, schema_name: str, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]) -> None:
    from aiojobs_pg import Backoff

    app.backoff = Backoff(base=0.1, jitter=0)
    job = await app.enqueue("slow_tick", schedule="1h", max_attempts=3)
    await app.trigger(job.id)
    first = start_worker(spawn, pg_dsn, schema_name, tmp_path / "first.log")

    async def running() -> bool:
        return (await app.get_job(job.id)).status is JobStatus.RUNNING

    await eventually(running, timeout=20)
    tick = (await app.get_job(job.id)).next_run_at
    first.kill()
    first.wait(10)
    start_worker(spawn, pg_dsn, schema_name, tmp_path / "second.log")

    async def tick_done() -> bool:
        return any(r.status is RunStatus.COMPLETED for r in await app.job_history(job.id))

    await eventually(tick_done, timeout=30)
    runs = await app.job_history(job.id)
    assert [(r.attempt, r.status) for r in runs] == [(1, RunStatus.FAILED), (2, RunStatus.COMPLETED)]
    assert "worker lost" in (runs[0].error or "")
    assert runs[0].scheduled_at == runs[1].scheduled_at == tick, "the retry ran for the same tick"
    after = await app.get_job(job.id)
    assert after.status is JobStatus.PENDING and after.attempts == 0
    assert after.next_run_at > tick
