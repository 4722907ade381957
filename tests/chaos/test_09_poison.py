"""Scenario 9: a poison job that kills its worker process on every attempt, among a stream of good jobs.

Two worker processes, restarted by the test when they die (as a process
supervisor would). The poison job has ``max_attempts=3``: after three dead
workers it must be ``failed``, and the other jobs must keep flowing meanwhile.
"""

from __future__ import annotations

import itertools
import time

import anyio
import pytest

from tests.chaos.apps.worker import POISON_EXIT
from tests.chaos.harness import Env, Proc, rounded, utcnow

pytestmark = pytest.mark.slow

LEASE = 1.5
GOOD = 400


async def test_09_poison_job_fails_after_max_attempts_others_flow(shared_env: Env,
                                                                  figures: dict[str, object]) -> None:
    """A job that kills its worker every time ends failed after 3 attempts; 400 other jobs all complete."""
    env = shared_env
    live = [env.fleet.start(10, lease=LEASE) for _ in range(2)]
    dead: list[Proc] = []
    poison = await env.app.enqueue("poison", max_attempts=3)
    t0 = time.monotonic()
    good: list[int] = []
    deadline = t0 + 75

    async def settled() -> bool:
        row = await env.pool.fetchrow(f"SELECT status, attempts FROM {env.schema}.all_jobs WHERE id = $1", poison.id)
        assert row is not None
        done = await env.count(
            "SELECT count(*) FROM {schema}.all_jobs WHERE id = ANY($1) AND status = 'completed'", good)
        return row["status"] == "failed" and len(good) == GOOD and done == GOOD

    # Good jobs trickle in (20 every 0.5 s) while the poison job keeps killing workers.
    while not await settled():
        assert time.monotonic() < deadline, "not settled within 75 s"
        if len(good) < GOOD:
            good += [j.id for j in await env.app.enqueue_many([{"handler": "record", "data": {"sleep": 0.05},
                                                               "max_attempts": 10}] * 20)]
        for p in list(live):
            if not p.alive:
                live.remove(p)
                dead.append(p)
                await env.ledger.close_dead(env.pool, p.pid, utcnow())
                live.append(env.fleet.start(10, lease=LEASE))
        await anyio.sleep(0.5)
    took = time.monotonic() - t0

    row = await env.app.get_job(poison.id)
    history = await env.app.job_history(poison.id)
    summary = await env.ledger.summary(env.pool, good)
    ends = [r["e"] for r in await env.pool.fetch(
        f"SELECT upper(run) AS e FROM {env.ledger.table} WHERE ended = 'done' AND job_id = ANY($1) ORDER BY 1", good)]
    poison_failed_at = await env.pool.fetchval(
        f"SELECT max(completed_at) FROM {env.schema}.job_runs WHERE job_id = $1", poison.id)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(ends) if b <= poison_failed_at]
    figures.update(
        lease_s=LEASE, poison_max_attempts=3, worker_deaths=len(dead), death_exit_codes=[p.returncode for p in dead],
        poison_status=row.status.value, poison_attempts=row.attempts,
        poison_history=[(r.attempt, r.status.value) for r in history], seconds_until_settled=rounded(took, 1),
        longest_pause_between_good_completions_while_poisoned_s=rounded(max(gaps, default=0.0), 2),
        **{f"good_{k}": v for k, v in summary.figures().items()})
    assert row.status.value == "failed" and row.attempts == 3
    assert [(r.attempt, r.status.value) for r in history] == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert all("worker lost" in (r.error or "") for r in history)
    assert [p.returncode for p in dead] == [POISON_EXIT] * 3
    assert summary.lost == [] and summary.mismatched == [] and summary.double_runs == 0
    # One worker dies at a time; the other keeps completing good jobs.
    assert max(gaps, default=0.0) <= 2.0
