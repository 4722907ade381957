"""Scenario 2: worker processes that die at precise points of the job protocol, many times over.

The crash points are wrappers around ``app.queries`` in the worker process
(``tests/chaos/apps/worker.py``, ``CHAOS_CRASH``): the engine is not changed.

- ``after_claim``: the claim committed and returned its jobs; the process exits
  before it starts any of them.
- ``before_complete``: handlers finished; the process exits when the completer
  is about to write their outcomes, so nothing of them is committed.
- ``during_renew``: the lease renewal statement is on the wire (it may or may
  not commit) when the process exits.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import anyio
import pytest

from tests.chaos.apps.worker import CRASH_EXIT
from tests.chaos.harness import Env, Proc, rounded, utcnow
from tests.chaos.steps import job_states

pytestmark = pytest.mark.slow

LEASE = 1.5
CRASHES = 20
JOBS = 300
PARALLEL = 2


@pytest.mark.parametrize("point", ["after_claim", "before_complete", "during_renew"])
async def test_02_crash_point(shared_env: Env, figures: dict[str, object], point: str) -> None:
    """Crash a worker at a protocol point 20 times: lost = 0, no overlap, at most one re-run per crash."""
    env = shared_env
    rng = random.Random(f"chaos-{point}")
    sleep = 0.8 if point == "during_renew" else 0.1
    ids: list[int] = []

    async def more_jobs(n: int) -> None:
        jobs = await env.app.enqueue_many(
            [{"handler": "record", "data": {"sleep": sleep}, "max_attempts": 50} for _ in range(n)])
        ids.extend(j.id for j in jobs)

    await more_jobs(JOBS)
    crashed: list[Proc] = []
    others: list[Proc] = []
    live: list[Proc] = []
    t0 = time.monotonic()
    deadline = t0 + 80

    async def unfinished() -> int:
        return await env.count("SELECT count(*) FROM {schema}.all_jobs WHERE id = ANY($1) AND status <> 'completed'",
                               ids)

    while (left := await unfinished()) or len(crashed) < CRASHES:
        assert time.monotonic() < deadline, f"not done in 80 s: {await job_states(env, ids)}, {len(crashed)} crashes"
        if left < 50 and len(crashed) < CRASHES:
            await more_jobs(100)  # work for the crashes still to come
        for p in list(live):
            if p.alive:
                continue
            live.remove(p)
            exited_at = p.exited_at or utcnow()
            await env.ledger.close_dead(env.pool, p.pid, exited_at)
            (crashed if p.returncode == CRASH_EXIT else others).append(p)
        while len(live) < PARALLEL:
            if len(crashed) + len([p for p in live if "CHAOS_CRASH" in p.env]) < CRASHES:
                live.append(env.fleet.start(20, lease=LEASE, crash=point, crash_at=rng.randint(1, 3)))
            else:
                live.append(env.fleet.start(20, lease=LEASE))
        await anyio.sleep(0.05)
    took = time.monotonic() - t0

    crashes = [e for p in crashed for e in p.events("chaos_crash")]
    affected: Counter[int] = Counter()
    for e in crashes:
        for job_id in set(e.get("inflight", [])) | set(e.get("batch", [])):
            affected[job_id] += 1
    summary = await env.ledger.summary(env.pool, ids)
    runs = {r["job_id"]: r["n"] for r in await env.pool.fetch(
        f"SELECT job_id, count(*) AS n FROM {env.ledger.table} WHERE job_id = ANY($1) GROUP BY job_id", ids)}
    too_many = {j: (runs.get(j, 0), affected[j]) for j in ids if runs.get(j, 0) > 1 + affected[j]}
    figures["jobs"] = len(ids)
    reruns = sum(max(0, runs.get(j, 0) - 1) for j in ids)
    figures.update(
        point=point, crashes=len(crashes), other_exits=[p.returncode for p in others], lease_s=LEASE,
        jobs_hit_by_a_crash=len(affected), reruns=reruns,
        reruns_per_crash_over_all_jobs=rounded(reruns / max(1, len(crashes)), 2),
        max_reruns_per_affecting_crash=max(((runs.get(j, 0) - 1) / affected[j] for j in affected), default=0),
        seconds=rounded(took, 1), **{k: v for k, v in summary.figures().items() if k != "jobs"})
    assert len(crashes) >= CRASHES and not [p for p in others if p.returncode not in (0, None)]
    assert summary.lost == [] and summary.mismatched == []
    assert summary.double_runs == 0
    assert too_many == {}, f"jobs re-run more than once per crash that hit them: {too_many}"
