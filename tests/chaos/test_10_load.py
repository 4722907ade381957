"""Scenario 10: exactly once under load, no faults: 4 worker processes x concurrency 50, 100,000 jobs.

On the private server (the load would disturb other users of the shared one).
The workers are started first and held just before their worker loop, the jobs
are enqueued (``enqueue_many``, 10,000 per call), then all four are released at
once. Every handler run writes its ledger row (two statements), so the ledger
sees each execution (rows of runs that start or end together are written by
one statement).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chaos.harness import Env, rounded
from tests.chaos.steps import wait_started
from tests.helpers import eventually

pytestmark = pytest.mark.slow

PROCESSES = 4
CONCURRENCY = 50
JOBS = 100_000


async def test_10_exactly_once_4x50_100k(private_env: Env, figures: dict[str, object], tmp_path: Path) -> None:
    """100,000 jobs, 4 processes x 50: every job ran exactly once, completed once, nothing overlapped."""
    env = private_env
    hold = tmp_path / "hold"
    hold.touch()
    workers = [env.fleet.start(CONCURRENCY, hold=hold, lease=30, ledger_pool=6) for _ in range(PROCESSES)]
    for w in workers:
        await eventually(lambda w=w: w.stats().get("connected"), timeout=30, message=f"{w.name} not ready")
    t_enqueue = time.monotonic()
    for _ in range(JOBS // 10_000):
        await env.app.enqueue_many([{"handler": "record"}] * 10_000)
    enqueue_s = time.monotonic() - t_enqueue
    await env.pool.execute(f"ANALYZE {env.schema}.jobs")

    hold.unlink()
    t0 = time.monotonic()
    await wait_started(env, *workers)

    async def all_done() -> bool:
        for w in workers:
            assert w.alive, f"{w.name} died (exit code {w.returncode})"
        return await env.count("SELECT count(*) FROM {schema}.all_jobs WHERE status = 'completed'") == JOBS

    await eventually(all_done, timeout=150, interval=0.5, message="100,000 jobs not completed within 150 s")
    took = time.monotonic() - t0

    summary = await env.ledger.summary(env.pool)
    not_once = await env.count("SELECT count(*) FROM {schema}.all_jobs WHERE status <> 'completed' OR attempts <> 1")
    history = await env.count("SELECT count(*) FROM {schema}.job_runs WHERE status = 'completed'")
    history_all = await env.count("SELECT count(*) FROM {schema}.job_runs")
    per_worker = sorted(int(w.stats().get("claimed", 0)) for w in workers)
    figures.update(processes=PROCESSES, concurrency=CONCURRENCY, enqueue_s=rounded(enqueue_s, 1),
                   drain_s=rounded(took, 1), jobs_per_s=round(JOBS / took), claimed_per_process=per_worker,
                   jobs_not_completed_once=not_once, history_rows=history_all, **summary.figures())
    assert summary.jobs == JOBS
    assert summary.runs == JOBS and summary.runs_histogram == {1: JOBS}
    assert summary.lost == [] and summary.mismatched == [] and summary.double_runs == 0
    assert not_once == 0 and history == JOBS and history_all == JOBS
    assert sum(per_worker) == JOBS and min(per_worker) > 0
