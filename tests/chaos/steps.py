"""Waits and checks shared by the scenarios (bounded polling on database state and process stats)."""

from __future__ import annotations

from typing import Any

from tests.chaos.harness import Env, Proc
from tests.helpers import eventually


async def wait_started(env: Env, *procs: Proc, timeout: float = 30) -> None:
    """Until every process runs its worker (registered in the workers table)."""

    async def ready() -> bool:
        for p in procs:
            assert p.alive, f"{p.name} died with exit code {p.returncode}"
        ids = [p.stats().get("worker_id") for p in procs]
        if not all(ids):
            return False
        return await env.count("SELECT count(*) FROM {schema}.workers WHERE id = ANY($1)", ids) == len(procs)

    await eventually(ready, timeout=timeout, interval=0.05, message="workers did not start")


async def wait_open_runs(env: Env, proc: Proc, n: int, timeout: float = 30) -> None:
    """Until ``proc`` has ``n`` runs open in the ledger."""

    async def started() -> bool:
        assert proc.alive, f"{proc.name} died with exit code {proc.returncode}"
        return await env.count(f"SELECT count(*) FROM {env.ledger.table} WHERE pid = $1 AND upper_inf(run)",
                               proc.pid) >= n

    await eventually(started, timeout=timeout, interval=0.05, message=f"{n} runs did not start in {proc.name}")


async def wait_completed(env: Env, ids: list[int], timeout: float, *, alive: list[Proc] | None = None) -> None:
    """Until every job of ``ids`` is completed (the processes in ``alive`` must stay alive)."""

    async def done() -> bool:
        for p in alive or []:
            assert p.alive, f"{p.name} died with exit code {p.returncode}"
        return await env.count("SELECT count(*) FROM {schema}.all_jobs WHERE id = ANY($1) AND status = 'completed'",
                               ids) == len(ids)

    await eventually(done, timeout=timeout, interval=0.1, message=f"{len(ids)} jobs not all completed in {timeout} s")


async def job_states(env: Env, ids: list[int]) -> dict[str, int]:
    rows = await env.pool.fetch(
        f"SELECT status, count(*) AS n FROM {env.schema}.all_jobs WHERE id = ANY($1) GROUP BY status", ids)
    return {r["status"]: r["n"] for r in rows}


def fenced(proc: Proc) -> list[dict[str, Any]]:
    """Completions this worker tried to write and the fence rejected (its own log says so)."""
    return proc.events("completion_fenced")
