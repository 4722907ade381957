"""Scenario 4: the worker's LISTEN connection is terminated (``pg_terminate_backend``), repeatedly.

For a few seconds every listener connection the worker opens is terminated as
soon as it appears, while jobs keep coming: they are picked up by the poll (or by
the wake-up that follows each reconnection). Then the listener is left alone: it
reconnects, and latency is back to what notifications give.

A terminated backend is not always reported by the driver as a connection
error: when the termination lands right after the connection was made, LISTEN
fails with ``asyncpg.InternalClientError`` (seen in this scenario's runs, about one
in five). The second phase injects that error (``CHAOS_LISTENER_FAULT``) so that
the outcome does not depend on luck: the worker must survive it too.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from tests.chaos.harness import Env, percentile, rounded
from tests.chaos.steps import wait_completed, wait_started
from tests.helpers import eventually

pytestmark = pytest.mark.slow

#: long, so that "picked up by the poll" and "woken by a notification" are far apart
POLL = 2.0
OUTAGE = 4.0


async def _latencies(env: Env, ids: list[int]) -> list[float]:
    rows = await env.pool.fetch(
        f"""SELECT extract(epoch FROM min(lower(l.run)) - j.created_at)::float8 AS s
            FROM {env.schema}.all_jobs j JOIN {env.ledger.table} l ON l.job_id = j.id
            WHERE j.id = ANY($1) GROUP BY j.id, j.created_at""", ids)
    return [r["s"] for r in rows]


async def _trickle(env: Env, n: int, every: float) -> list[int]:
    ids = []
    for _ in range(n):
        ids.append((await env.app.enqueue("record")).id)
        await anyio.sleep(every)
    return ids


async def test_04_listener_terminated_reconnects_and_latency_recovers(shared_env: Env, figures: dict[str, object],
                                                                      tmp_path: Path) -> None:
    """Listener killed again and again for 4 s: jobs still run (poll), it reconnects, latency returns to normal."""
    env = shared_env
    trigger = tmp_path / "listener.fault"
    worker = env.fleet.start(10, poll=POLL, listener_fault=trigger)
    await wait_started(env, worker)
    await eventually(lambda: bool(worker.stats().get("listener_connected")), timeout=10)
    channel = f"{env.schema}_jobs"

    before = await _trickle(env, 20, 0.05)
    await wait_completed(env, before, 10, alive=[worker])

    terminated: set[int] = set()
    during: list[int] = []
    t_start = time.monotonic()
    next_job = t_start
    while time.monotonic() - t_start < OUTAGE:
        # This worker's listening backends only: its application_name and this test's channel.
        pids = {r["pid"] for r in await env.pool.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query = $2",
            worker.name, f'LISTEN "{channel}"')}
        listener = worker.stats().get("listener_pid")
        if listener:
            pids.add(int(listener))
        for pid in pids - terminated:
            await env.pool.fetchval("SELECT pg_terminate_backend($1)", pid)
            terminated.add(pid)
        if time.monotonic() >= next_job:
            during.append((await env.app.enqueue("record")).id)
            next_job += 0.25
        await anyio.sleep(0.02)
    outage_end = time.monotonic()
    reconnects_during = worker.stats().get("reconnects", 0)

    async def listening_again() -> bool:
        s = worker.stats()
        return bool(s.get("listener_connected")) and s.get("listener_pid") not in terminated

    await eventually(listening_again, timeout=15, interval=0.05, message="the listener did not come back")
    back_after = time.monotonic() - outage_end
    await wait_completed(env, during, 15, alive=[worker])
    after = await _trickle(env, 20, 0.05)
    await wait_completed(env, after, 10, alive=[worker])

    lat_before, lat_during, lat_after = (await _latencies(env, before), await _latencies(env, during),
                                         await _latencies(env, after))
    summary = await env.ledger.summary(env.pool, before + during + after)
    figures.update(
        poll_interval_s=POLL, outage_s=OUTAGE, listener_backends_terminated=len(terminated),
        reconnects=worker.stats().get("reconnects"), reconnects_during_outage=reconnects_during,
        listener_back_after_outage_s=rounded(back_after, 2),
        latency_before_p50_s=rounded(percentile(lat_before, 50)), latency_before_max_s=rounded(max(lat_before)),
        jobs_during_outage=len(during), latency_during_p50_s=rounded(percentile(lat_during, 50)),
        latency_during_max_s=rounded(max(lat_during)),
        latency_after_p50_s=rounded(percentile(lat_after, 50)), latency_after_max_s=rounded(max(lat_after)),
        **summary.figures())
    assert worker.alive, f"the worker died (exit code {worker.returncode})"
    assert len(terminated) >= 2 and worker.stats().get("reconnects", 0) >= len(terminated)
    assert summary.lost == [] and summary.double_runs == 0
    # Without a listener, the poll (or the wake-up after a reconnection) picks jobs up.
    assert max(lat_during) <= POLL + 1.0
    # With it back, notifications wake the worker: far below the poll interval again.
    assert (percentile(lat_after, 50) or 0.0) <= 0.25 and max(lat_after) <= POLL / 2

    # Phase 2: the next listener connection fails its LISTEN with the driver's internal error.
    trigger.touch()
    listener = worker.stats().get("listener_pid")
    await env.pool.fetchval("SELECT pg_terminate_backend($1)", listener)
    await eventually(lambda: not trigger.exists() or not worker.alive, timeout=10, message="no reconnection")
    await anyio.sleep(0.5)
    figures["survived_injected_listener_error"] = worker.alive
    assert worker.alive, f"an InternalClientError on the listener killed the worker (exit code {worker.returncode})"
    await eventually(listening_again, timeout=15, interval=0.05, message="the listener did not come back")
    last = await _trickle(env, 10, 0.05)
    await wait_completed(env, last, 10, alive=[worker])
    assert max(await _latencies(env, last)) <= POLL / 2
