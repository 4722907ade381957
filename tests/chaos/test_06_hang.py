"""Scenario 6: the database hangs: a session holds ``ACCESS EXCLUSIVE`` on the jobs table for 30 s.

On the private server. The workers and the test's App run with
``command_timeout=5`` s. Every statement of the engine (claim, completion,
renewal, rescue, heartbeat) waits on the lock; none may wait longer than its
timeout. The worker's own timings come from wrappers around ``app.queries`` in
the worker process; independently, the test samples ``pg_stat_activity`` for the
longest lock wait of any worker backend. The lease (10 s) is shorter than the
hang, so the workers give their running jobs up and re-run them after it.
"""

from __future__ import annotations

import time

import anyio
import asyncpg
import pytest

from aiojobs_pg import App
from tests.chaos.harness import Env, rounded, utcnow
from tests.chaos.steps import job_states, wait_started
from tests.helpers import eventually

pytestmark = pytest.mark.slow

TIMEOUT = 5.0
HANG = 30.0
LEASE = 10.0
SLACK = 1.0
_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError, asyncpg.InternalClientError)


async def test_06_table_lock_for_30s(private_env: Env, figures: dict[str, object]) -> None:
    """A 30 s table lock: no call waits beyond its 5 s timeout; workers recover when it is released."""
    env = private_env
    workers = [env.fleet.start(20, lease=LEASE, command_timeout=TIMEOUT) for _ in range(2)]
    await wait_started(env, *workers)
    api = App(env.dsn, schema=env.schema, command_timeout=TIMEOUT, auto_migrate=False)
    await api.open()
    api_calls: list[tuple[float, float, str]] = []  # (start offset, duration, outcome)
    waits: list[float] = []
    t0 = time.monotonic()
    released = anyio.Event()
    stop = anyio.Event()

    async def load() -> None:
        while not stop.is_set():
            start = time.monotonic()
            try:
                await api.enqueue_many([{"handler": "record", "data": {"sleep": 0.3}} for _ in range(5)])
                outcome = "ok"
            except _ERRORS as exc:
                outcome = type(exc).__name__
            api_calls.append((start - t0, time.monotonic() - start, outcome))
            await anyio.sleep(0.1)

    async def sample() -> None:
        conn = await asyncpg.connect(env.dsn)
        try:
            while not stop.is_set():
                waited = await conn.fetchval(
                    """SELECT max(extract(epoch FROM clock_timestamp() - query_start))::float8 FROM pg_stat_activity
                       WHERE application_name LIKE 'chaos%' AND state = 'active' AND wait_event_type = 'Lock'""")
                if waited is not None:
                    waits.append(waited)
                await anyio.sleep(0.1)
        finally:
            await conn.close()

    async def hang() -> None:
        conn = await asyncpg.connect(env.dsn)
        try:
            async with conn.transaction():
                await conn.execute(f"LOCK TABLE {env.schema}.jobs IN ACCESS EXCLUSIVE MODE")
                await anyio.sleep(HANG)
        finally:
            await conn.close()
            released.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(load)
        tg.start_soon(sample)
        await anyio.sleep(5)
        lock_at = time.monotonic() - t0
        tg.start_soon(hang)
        await released.wait()
        release_at = time.monotonic() - t0
        release_wall = utcnow()
        await anyio.sleep(8)
        stop.set()

    async def drained() -> bool:
        for w in workers:
            assert w.alive, f"{w.name} died (exit code {w.returncode})"
        ids = [r["id"] for r in await env.pool.fetch(f"SELECT id FROM {env.schema}.all_jobs")]
        return set(await job_states(env, ids)) == {"completed"}

    await eventually(drained, timeout=40, interval=0.2, message="the jobs were not all completed 40 s after the lock")
    await api.close()

    per_method: dict[str, float] = {}
    for w in workers:
        for name, c in w.stats().get("calls", {}).items():
            per_method[name] = max(per_method.get(name, 0.0), c["max_s"])
    during = [c for c in api_calls if lock_at <= c[0] < release_at]
    after = [c for c in api_calls if c[0] >= release_at + 1 and c[2] == "ok"]
    first_done = await env.pool.fetchval(
        f"SELECT min(upper(run)) FROM {env.ledger.table} WHERE ended = 'done' AND upper(run) > $1", release_wall)
    done_after = None if first_done is None else (first_done - release_wall).total_seconds()
    summary = await env.ledger.summary(env.pool)
    figures.update(
        command_timeout_s=TIMEOUT, hang_s=HANG, lease_s=LEASE,
        worker_call_max_s={k: rounded(v, 2) for k, v in sorted(per_method.items())},
        longest_lock_wait_seen_in_pg_stat_activity_s=rounded(max(waits, default=0.0), 2),
        api_calls_during_hang=len(during),
        api_call_max_during_hang_s=rounded(max((c[1] for c in during), default=0), 2),
        api_outcomes_during_hang=sorted({c[2] for c in during}),
        api_calls_ok_after_release=len(after), workers_alive=[w.alive for w in workers],
        first_completion_after_release_s=rounded(done_after, 2), **summary.figures())
    assert all(w.alive for w in workers)
    assert max(per_method.values()) <= TIMEOUT + SLACK, per_method
    assert max(waits, default=0.0) <= TIMEOUT + SLACK
    assert during and max(c[1] for c in during) <= TIMEOUT + SLACK
    assert after, "the API did not recover after the lock was released"
    assert summary.lost == [] and summary.mismatched == [] and summary.double_runs == 0
