"""Scenario 3: a late completion from a worker whose lease expired, and whose job was re-claimed, changes nothing.

These drive the engine's own statements (``Queries.claim`` / ``complete`` /
``renew_leases`` and ``Maintenance.rescue``) from one process, as two workers
"A" (the late one) and "B" (the one that re-claimed), so that the late write can
be timed against every step of the rescue: 1,000 races, each a separate statement.
"""

from __future__ import annotations

import random
import time

import anyio
import pytest

from aiojobs_pg import App, Backoff
from aiojobs_pg.executor import Executor, next_tick
from aiojobs_pg.maintenance import Maintenance
from aiojobs_pg.models import ClaimedJob, JobStatus, Outcome, RunStatus, micros
from tests.chaos.harness import Env, rounded

pytestmark = pytest.mark.slow

RACES = 1000


def executor(worker_id: str) -> Executor:
    return Executor({}, worker_id=worker_id, backoff=Backoff(base=0, jitter=0))


def maintenance(app: App) -> Maintenance:
    return Maintenance(app.pool, app.queries, history=True, interval=1, history_retention=None,
                       job_retention=None, worker_retention=60)


def success(ex: Executor, job: ClaimedJob, result: str) -> Outcome:
    """The outcome a worker writes when the handler returned ``result``."""
    if job.schedule is not None:
        return ex.outcome(job, micros(job.claimed_at), JobStatus.PENDING, RunStatus.COMPLETED,
                          result_json=f'"{result}"', next_run_at=next_tick(job), reset_attempts=True)
    return ex.outcome(job, micros(job.claimed_at), JobStatus.COMPLETED, RunStatus.COMPLETED, result_json=f'"{result}"')


async def expire_leases(app: App, worker_id: str) -> None:
    """A's lease runs out (set in the past rather than waited for)."""
    await app.pool.execute(
        f"UPDATE {app.schema}.jobs SET lease_expires_at = now() - interval '1 second' "
        "WHERE worker_id = $1 AND status = 'running'", worker_id)


async def test_03_late_completions_race_the_rescue_and_change_nothing(shared_env: Env,
                                                                      figures: dict[str, object]) -> None:
    """1,000 late completions from a worker that lost its leases, racing the rescue, re-claim and completion."""
    app, q = shared_env.app, shared_env.app.queries
    rng = random.Random(3)
    await app.enqueue_many([{"handler": "record", "data": {"i": i}} for i in range(RACES)])
    rows = await q.claim(app.pool, ["default"], RACES, 30, "A", q.claim_for(["record"]))
    assert len(rows) == RACES
    a_jobs = {job.id: job for job in rows}
    ex_a, ex_b = executor("A"), executor("B")
    late = {job_id: success(ex_a, job, "A") for job_id, job in a_jobs.items()}
    await expire_leases(app, "A")

    t0 = time.monotonic()
    a_calls: dict[int, tuple[float, bool]] = {}
    rescued_at: dict[int, float] = {}
    b_claimed_at: dict[int, float] = {}
    b_done_at: dict[int, float] = {}
    b_applied: set[int] = set()

    async def late_completion(job_id: int) -> None:
        await anyio.sleep(rng.uniform(0, 1.5))
        at = time.monotonic()
        applied = await q.complete(app.pool, [late[job_id]], history=True)
        a_calls[job_id] = (at, job_id in applied)

    async def rescue_reclaim_complete() -> None:
        await anyio.sleep(0.05)
        keeper = maintenance(app)
        while True:  # rows a late completion holds are skipped (SKIP LOCKED) and taken next round
            before = time.monotonic()
            if not await keeper.rescue():
                break
            for r in await app.pool.fetch(
                    f"SELECT job_id FROM {app.schema}.job_runs WHERE worker_id = 'A' AND status = 'failed'"):
                rescued_at.setdefault(r["job_id"], before)
        running: list[ClaimedJob] = []
        while True:
            got = await q.claim(app.pool, ["default"], 100, 30, "B", q.claim_for(["record"]))
            now = time.monotonic()
            for job in got:
                b_claimed_at[job.id] = now
                running.append(job)
            if not got:
                break
            await anyio.sleep(0.03)
        for i in range(0, len(running), 100):
            batch = [success(ex_b, j, "B") for j in running[i:i + 100]]
            b_applied.update(await q.complete(app.pool, batch, history=True))
            now = time.monotonic()
            for o in batch:
                b_done_at[o.job_id] = now
            await anyio.sleep(0.03)

    async with anyio.create_task_group() as tg:
        for job_id in a_jobs:
            tg.start_soon(late_completion, job_id)
        tg.start_soon(rescue_reclaim_complete)
    took = time.monotonic() - t0

    a_applied = {j for j, (_, ok) in a_calls.items() if ok}
    jobs = {r["id"]: r for r in await app.pool.fetch(
        f"SELECT id, status, attempts, result FROM {app.schema}.all_jobs")}
    history: dict[int, list[tuple[str, str, int]]] = {}
    for r in await app.pool.fetch(f"SELECT job_id, worker_id, status, attempt FROM {app.schema}.job_runs ORDER BY id"):
        history.setdefault(r["job_id"], []).append((r["worker_id"], r["status"], r["attempt"]))

    after_reclaim = [j for j, (at, ok) in a_calls.items() if j in b_claimed_at and at >= b_claimed_at[j]]
    after_b_done = [j for j, (at, ok) in a_calls.items() if j in b_done_at and at >= b_done_at[j]]
    figures.update(
        races=RACES, seconds=rounded(took, 2), late_applied_before_the_rescue=len(a_applied),
        late_fenced=RACES - len(a_applied), late_after_the_reclaim=len(after_reclaim),
        late_after_the_new_owner_completed=len(after_b_done), reclaimed_by_b=len(b_claimed_at),
        b_completions_applied=len(b_applied),
        late_writes_that_changed_a_reclaimed_job=len(a_applied & set(b_claimed_at)))

    assert len(a_calls) == RACES
    assert not a_applied & set(b_claimed_at), "a late completion went through on a re-claimed job"
    assert b_applied == set(b_claimed_at)
    for job_id in a_jobs:
        row = jobs[job_id]
        assert row["status"] == "completed", dict(row)
        if job_id in a_applied:
            # It landed before the rescue took the row: the job simply completed under A's lease.
            assert row["result"] == "A" and history[job_id] == [("A", "completed", 1)]
        else:
            assert row["result"] == "B" and row["attempts"] == 2
            assert history[job_id] == [("A", "failed", 1), ("B", "completed", 2)], history[job_id]
    # Most races must really be late, or the test proves little.
    assert len(after_reclaim) >= RACES // 4, figures


# --- the fencing token is not monotonic: two ways for an old attempt number to come back ---

async def test_03_late_completion_from_an_earlier_tick_is_fenced(shared_env: Env, figures: dict[str, object]) -> None:
    """A recurring job: A's attempt 1 of tick 1 arrives after tick 2's attempt 1 was claimed by C."""
    app, q = shared_env.app, shared_env.app.queries
    job = await app.enqueue("record", schedule="1h")
    await app.pool.execute(f"UPDATE {app.schema}.jobs SET next_run_at = now() WHERE id = $1", job.id)
    a = (await q.claim(app.pool, ["default"], 1, 30, "A", q.claim_for(["record"])))[0]
    await expire_leases(app, "A")
    assert await maintenance(app).rescue() == 1
    b = (await q.claim(app.pool, ["default"], 1, 30, "B", q.claim_for(["record"])))[0]
    assert await q.complete(app.pool, [success(executor("B"), b, "B")], history=True) == {job.id}
    # The next tick comes (brought forward instead of waited for): C runs it, as attempt 1 again.
    await app.pool.execute(f"UPDATE {app.schema}.jobs SET next_run_at = now() WHERE id = $1", job.id)
    c = (await q.claim(app.pool, ["default"], 1, 30, "C", q.claim_for(["record"])))[0]
    figures.update(a_attempt=a.attempt, b_attempt=b.attempt, c_attempt=c.attempt)

    renewed = await q.renew_leases(app.pool, [(a.id, a.token)], 30)
    applied = await q.complete(app.pool, [success(executor("A"), a, "A")], history=True)
    row = await app.get_job(job.id)
    figures.update(late_renewal_applied=bool(renewed), late_completion_applied=bool(applied),
                   status_after=row.status.value)
    assert renewed == set(), "A's late renewal extended C's lease"
    assert applied == set(), "A's late completion ended C's run"
    assert row.status is JobStatus.RUNNING and row.worker_id == "C"


async def test_03_late_completion_after_a_manual_retry_is_fenced(shared_env: Env, figures: dict[str, object]) -> None:
    """max_attempts=1: A's run is rescued (failed), an operator retries, B claims; A's late write must not count."""
    app, q = shared_env.app, shared_env.app.queries
    job = await app.enqueue("record", max_attempts=1)
    a = (await q.claim(app.pool, ["default"], 1, 30, "A", q.claim_for(["record"])))[0]
    await expire_leases(app, "A")
    assert await maintenance(app).rescue() == 1
    assert (await app.get_job(job.id)).status is JobStatus.FAILED
    await app.retry(job.id)
    b = (await q.claim(app.pool, ["default"], 1, 30, "B", q.claim_for(["record"])))[0]
    figures.update(a_attempt=a.attempt, b_attempt=b.attempt)

    renewed = await q.renew_leases(app.pool, [(a.id, a.token)], 30)
    applied = await q.complete(app.pool, [success(executor("A"), a, "A")], history=True)
    row = await app.get_job(job.id)
    figures.update(late_renewal_applied=bool(renewed), late_completion_applied=bool(applied),
                   status_after=row.status.value, result_after=row.result)
    assert renewed == set(), "A's late renewal extended B's lease"
    assert applied == set(), "A's late completion completed B's run"
    assert row.status is JobStatus.RUNNING and row.worker_id == "B"
