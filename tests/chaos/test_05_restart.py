"""Scenario 5: PostgreSQL is stopped and started again while workers run and jobs keep coming.

On the private server (``private_pg``): ``pg_ctl stop -m fast`` terminates every
session; the server stays down for a few seconds, then ``pg_ctl start``. The
leases (8 s) outlast the outage, so workers may keep the jobs they hold.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import anyio.to_thread
import asyncpg
import pytest

from tests.chaos.harness import Env, PrivatePG, rounded
from tests.chaos.steps import job_states, wait_completed, wait_started
from tests.helpers import eventually

pytestmark = pytest.mark.slow

LEASE = 8.0
DOWN = 5.0
RATE = 100  # jobs per second offered during the whole run
BEFORE, AFTER = 6.0, 10.0
# What an API call may raise while the server is down. InternalClientError is asyncpg's answer when a
# pooled connection already received the server's "terminating connection" message: counted apart.
_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, asyncpg.InternalClientError)


async def _completions_per_second(env: Env, since: float) -> dict[int, int]:
    rows = await env.pool.fetch(
        f"""SELECT floor(extract(epoch FROM upper(run)) - $1)::int AS s, count(*) AS n FROM {env.ledger.table}
            WHERE ended = 'done' GROUP BY 1 ORDER BY 1""", since)
    return {r["s"]: r["n"] for r in rows}


async def test_05_postgres_restart_under_load(private_env: Env, private_pg: PrivatePG,
                                              figures: dict[str, object]) -> None:
    """Restart PostgreSQL under load: workers stay alive, reconnect, throughput recovers, nothing lost."""
    env = private_env
    workers = [env.fleet.start(20, lease=LEASE) for _ in range(2)]
    await wait_started(env, *workers)

    t0 = time.time()
    errors: list[str] = []
    offered = 0
    stop_load = anyio.Event()

    async def load() -> None:
        nonlocal offered
        while not stop_load.is_set():
            try:
                await env.app.enqueue_many([{"handler": "record", "data": {"sleep": 0.2}} for _ in range(RATE // 10)])
                offered += RATE // 10
            except _ERRORS as exc:
                errors.append(type(exc).__name__)
            await anyio.sleep(0.1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(load)
        await anyio.sleep(BEFORE)
        down_at = time.time()
        await anyio.to_thread.run_sync(private_pg.stop)
        stopped_at = time.time()
        await anyio.sleep(DOWN)
        await anyio.to_thread.run_sync(private_pg.start)
        up_at = time.time()
        await anyio.sleep(AFTER)
        stop_load.set()

    async def drained() -> bool:
        for w in workers:
            assert w.alive, f"{w.name} died (exit code {w.returncode})"
        states = await job_states(env, [r["id"] for r in await env.pool.fetch(f"SELECT id FROM {env.schema}.all_jobs")])
        return set(states) == {"completed"}

    await eventually(drained, timeout=40, interval=0.2, message="the backlog was not drained within 40 s")
    drained_at = time.time()

    per_second = await _completions_per_second(env, t0)
    first_after = min((s for s, n in per_second.items() if s >= up_at - t0 and n > 0), default=None)
    recovered = next((s for s in sorted(per_second) if s >= up_at - t0 and per_second[s] >= RATE * 0.8), None)
    summary = await env.ledger.summary(env.pool)
    stats = [w.stats() for w in workers]
    figures.update(
        lease_s=LEASE, offered_rate_per_s=RATE, jobs_enqueued=summary.jobs, enqueue_calls_failed=len(errors),
        enqueue_error_types=sorted(set(errors)), stop_took_s=rounded(stopped_at - down_at, 2),
        server_down_s=rounded(up_at - down_at, 2),
        first_completion_after_start_s=None if first_after is None else first_after - round(up_at - t0),
        throughput_back_to_80pct_after_start_s=None if recovered is None else recovered - round(up_at - t0),
        backlog_drained_after_start_s=rounded(drained_at - up_at, 1),
        completions_per_second={str(k): v for k, v in sorted(per_second.items())},
        listener_reconnects=[s.get("reconnects") for s in stats], workers_alive=[w.alive for w in workers],
        **summary.figures())
    assert all(w.alive for w in workers)
    assert summary.lost == [] and summary.mismatched == []
    assert summary.double_runs == 0
    assert all((s.get("reconnects") or 0) >= 1 for s in stats)
    assert recovered is not None and recovered - (up_at - t0) <= 10, figures["completions_per_second"]


@pytest.mark.parametrize("method", ["claim", "complete", "renew_leases", "expired_leases"])
async def test_05_worker_survives_a_driver_error_after_a_restart(shared_env: Env, figures: dict[str, object],
                                                                 tmp_path: Path, method: str) -> None:
    """The error asyncpg raises on a connection the restart killed, once, in one statement: the worker goes on."""
    env = shared_env
    trigger = tmp_path / "driver.fault"
    worker = env.fleet.start(10, lease=1.5, driver_fault=f"{method}:{trigger}")
    await wait_started(env, worker)
    # Long enough that a renewal and a rescue round come while it runs.
    first = await env.app.enqueue("record", {"sleep": 1.2})
    trigger.touch()
    await eventually(lambda: not trigger.exists(), timeout=15, message=f"{method} was not called")
    await anyio.sleep(0.5)
    figures.update(method=method, worker_alive_after_the_error=worker.alive, exit_code=worker.returncode)
    assert worker.alive, f"an InternalClientError in {method} stopped the worker (exit code {worker.returncode})"
    more = [j.id for j in await env.app.enqueue_many([{"handler": "record"} for _ in range(5)])]
    await wait_completed(env, [first.id, *more], 20, alive=[worker])
