"""The claim's and the completion's seams: conditions on what a worker claims, steps in the completion's transaction."""

from __future__ import annotations

from collections.abc import Sequence

from aiojobs_pg import App, JobStatus
from aiojobs_pg.models import Outcome
from aiojobs_pg.queries import ClaimCondition, Conn
from aiojobs_pg.testing import drain


async def test_a_claim_condition_narrows_what_the_worker_takes(app: App) -> None:
    ran: list[str] = []
    app.register("h", lambda data: ran.append(data["tenant"]))
    jobs = [await app.enqueue("h", {"tenant": t}) for t in ("a", "b", "a", "b")]
    app.claim_conditions.append(ClaimCondition("j.data->>'tenant' = :tenant::text", {"tenant": "a"}))
    result = await drain(app)
    assert ran == ["a", "a"] and (result.completed, result.remaining) == (2, 2), result
    by_tenant = {t: [await app.get_job(j.id) for j, d in zip(jobs, "abab", strict=True) if d == t] for t in "ab"}
    assert [(j.status, j.attempts) for j in by_tenant["a"]] == [(JobStatus.COMPLETED, 1)] * 2
    # Never claimed, so no attempt spent: a condition is part of the claim, not claim-then-release.
    assert [(j.status, j.attempts) for j in by_tenant["b"]] == [(JobStatus.PENDING, 0)] * 2


async def test_conditions_combine_and_keep_the_claim_order(app: App) -> None:
    order: list[int] = []
    app.register("h", lambda data: order.append(data["n"]))
    for n, priority in ((1, 0), (2, 5), (3, 9), (4, 5)):
        await app.enqueue("h", {"n": n}, priority=priority)
    app.claim_conditions += [ClaimCondition("j.priority >= :low::int", {"low": 5}),
                             ClaimCondition("(j.data->>'n')::int <> :skip::int", {"skip": 4})]
    await app.run_worker(concurrency=1, burst=True, handle_signals=False)
    assert order == [3, 2]


async def test_completion_steps_commit_with_the_completion(app: App) -> None:
    await app.pool.execute(f"CREATE TABLE {app.schema}.seen (job_id bigint PRIMARY KEY)")
    failures = [1]  # the first flush's step fails once

    async def record(conn: Conn, batch: Sequence[Outcome], applied: set[int]) -> None:
        await conn.executemany(f"INSERT INTO {app.schema}.seen VALUES ($1)", [(i,) for i in sorted(applied)])
        if failures:
            failures.pop()
            await conn.execute("SELECT 1 / 0")  # a database error: the whole flush rolls back, then retries

    app.register("h", lambda data: None)
    app.completion_steps.append(record)
    jobs = [await app.enqueue("h", {"n": n}) for n in range(5)]
    result = await drain(app, concurrency=5)
    assert not failures
    assert result.completed == 5  # counted once each: the rolled-back flush's outcomes are not
    seen = {r["job_id"] for r in await app.pool.fetch(f"SELECT job_id FROM {app.schema}.seen")}
    assert seen == {j.id for j in jobs}  # each once (the primary key would refuse a second)
    assert [(await app.get_job(j.id)).status for j in jobs] == [JobStatus.COMPLETED] * 5
    runs = await app.pool.fetchval(f"SELECT count(*) FROM {app.schema}.job_runs")
    assert runs == 5  # the rolled-back flush left no history row
