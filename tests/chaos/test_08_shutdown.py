"""Scenario 8: graceful shutdown of a worker process holding short and long jobs.

First SIGTERM: no new claims, running jobs get ``drain_timeout`` to finish, the
rest go back to ``pending`` with their attempt given back; the process exits
within drain + 1 s. A second SIGTERM during the drain stops at once (within 2 s)
and still hands every job back: nothing stays ``running`` under that worker.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.chaos.harness import Env, Proc, rounded, utcnow
from tests.chaos.steps import wait_open_runs, wait_started
from tests.helpers import eventually

pytestmark = pytest.mark.slow

SHORT, LONG = 10, 10


async def _hold_jobs(env: Env, drain: float) -> tuple[Proc, list[int], list[int]]:
    worker = env.fleet.start(30, drain=drain)
    await wait_started(env, worker)
    short = [j.id for j in await env.app.enqueue_many([{"handler": "record", "data": {"sleep": 1.0}}] * SHORT)]
    long = [j.id for j in await env.app.enqueue_many([{"handler": "record", "data": {"sleep": 120}}] * LONG)]
    await wait_open_runs(env, worker, SHORT + LONG)
    return worker, short, long


async def _signal_and_wait_stopping(worker: Proc) -> tuple[float, object]:
    t0 = time.monotonic()
    at = utcnow()
    worker.signal(signal.SIGTERM)
    # The process has handled the signal once its producer says so: from here on it may claim nothing.
    await eventually(lambda: worker.stats().get("stopping") or not worker.alive, timeout=5, interval=0.01)
    return t0, at


async def _check_released(env: Env, worker: Proc, long: list[int], figures: dict[str, object]) -> None:
    rows = {r["id"]: r for r in await env.pool.fetch(
        f"SELECT id, status, attempts, worker_id FROM {env.schema}.all_jobs WHERE id = ANY($1)", long)}
    history = {r["job_id"]: (r["status"], r["attempt"]) for r in await env.pool.fetch(
        f"SELECT job_id, status, attempt FROM {env.schema}.job_runs WHERE job_id = ANY($1)", long)}
    runs = await env.pool.fetch(
        f"SELECT job_id, ended, upper(run) AS e FROM {env.ledger.table} WHERE job_id = ANY($1)", long)
    wid = worker.stats().get("worker_id")
    still_running = await env.count(
        "SELECT count(*) FROM {schema}.all_jobs WHERE status = 'running' AND worker_id = $1", wid)
    figures.update(long_jobs_released=sum(1 for r in rows.values() if r["status"] == "pending" and r["attempts"] == 0),
                   running_left_for_that_worker=still_running,
                   long_handlers_cancelled_in_ledger=sum(1 for r in runs if r["ended"] == "cancelled"))
    assert still_running == 0
    for job_id in long:
        assert rows[job_id]["status"] == "pending" and rows[job_id]["attempts"] == 0, dict(rows[job_id])
        assert history[job_id] == ("released", 1)
    # The handlers really stopped (the ledger saw them end), they did not just get forgotten.
    assert sorted(r["ended"] for r in runs) == ["cancelled"] * LONG


async def test_08_sigterm_drains_then_releases(shared_env: Env, figures: dict[str, object]) -> None:
    """SIGTERM, drain 3 s: short jobs finish, long ones are released uncharged, exit within drain + 1 s."""
    env = shared_env
    drain = 3.0
    worker, short, long = await _hold_jobs(env, drain)
    t0, signalled_at = await _signal_and_wait_stopping(worker)
    stopping_after = time.monotonic() - t0
    late = [j.id for j in await env.app.enqueue_many([{"handler": "record"}] * 10)]
    await eventually(lambda: not worker.alive, timeout=drain + 5, interval=0.01,
                     message="the worker did not exit within drain + 5 s")
    took = time.monotonic() - t0
    done = await env.count("SELECT count(*) FROM {schema}.all_jobs WHERE id = ANY($1) AND status = 'completed'", short)
    late_claimed = await env.count("SELECT count(*) FROM {schema}.all_jobs WHERE id = ANY($1) AND attempts > 0", late)
    claimed_after = await env.count(
        "SELECT count(*) FROM {schema}.all_jobs WHERE last_run_at > $1 AND id <> ALL($2)", signalled_at, short + long)
    figures.update(drain_timeout_s=drain, exit_after_signal_s=rounded(took, 2), exit_code=worker.returncode,
                   signal_handled_after_s=rounded(stopping_after, 3), short_jobs_completed=done,
                   jobs_enqueued_after_the_signal_claimed=late_claimed, claims_after_the_signal=claimed_after)
    assert worker.returncode == 0
    assert drain - 0.3 <= took <= drain + 1.0, f"exited {took:.2f} s after SIGTERM (drain {drain} s)"
    assert done == SHORT and late_claimed == 0 and claimed_after == 0
    await _check_released(env, worker, long, figures)


async def test_08_second_sigterm_stops_within_2s(shared_env: Env, figures: dict[str, object]) -> None:
    """A second SIGTERM during a 30 s drain: exit within 2 s, every long job handed back, none left running."""
    env = shared_env
    worker, _, long = await _hold_jobs(env, drain=30.0)
    await _signal_and_wait_stopping(worker)
    await eventually(lambda: worker.stats().get("inflight", 99) <= LONG, timeout=5,
                     message="the short jobs did not finish during the drain")
    assert worker.alive
    t1 = time.monotonic()
    worker.signal(signal.SIGTERM)
    await eventually(lambda: not worker.alive, timeout=5, interval=0.01,
                     message="the worker did not exit within 5 s of the second signal")
    took = time.monotonic() - t1
    figures.update(exit_after_second_signal_s=rounded(took, 2), exit_code=worker.returncode)
    assert worker.returncode == 0
    assert took <= 2.0, f"exited {took:.2f} s after the second signal"
    await _check_released(env, worker, long, figures)
