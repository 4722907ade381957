"""Job dependencies (``after=``), chains and groups, and follow-ups that commit with a run (``ctx.enqueue``)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from aiojobs_pg import App, Job, JobContext, JobStatus, ValidationError
from tests.helpers import eventually
from tests.integration.test_processes import Procs, ledger, procs  # noqa: F401 (fixtures used by name)


def _register(app: App) -> list[tuple[int, Any]]:
    """``echo`` returns its data and its parents' results; ``boom`` fails; ``spawn`` enqueues ``echo``."""
    runs: list[tuple[int, Any]] = []

    @app.handler()
    async def echo(data: Any, ctx: JobContext) -> Any:
        runs.append((ctx.job_id, data))
        return {"data": data, "parents": {str(k): v for k, v in sorted(ctx.parent_results.items())}}

    @app.handler()
    async def boom(data: Any, ctx: JobContext) -> None:
        runs.append((ctx.job_id, data))
        raise ValueError(f"boom {data}")

    @app.handler()
    async def spawn(data: Any, ctx: JobContext) -> str:
        runs.append((ctx.job_id, data))
        await ctx.enqueue("echo", {"from": ctx.job_id}, after=data.get("after"))
        if ctx.attempt < data.get("fail_until", 0):
            raise ValueError("not yet")
        return "spawned"

    return runs


async def _jobs(app: App, ids: list[int]) -> list[Job]:
    return [await app.get_job(i) for i in ids]


async def _drain(app: App) -> None:
    await app.run_worker(burst=True, handle_signals=False, concurrency=4)


async def test_a_job_waits_until_all_its_parents_completed_and_reads_their_results(app: App) -> None:
    runs = _register(app)
    a = await app.enqueue("echo", "a")
    b = await app.enqueue("echo", "b", run_at=None, delay=0.3)
    child = await app.enqueue("echo", "child", after=[a.id, b])
    assert child.status is JobStatus.WAITING
    assert child.parents == [a.id, b.id] and child.waiting_for == [a.id, b.id]

    async with app.worker(concurrency=2):
        async def a_done() -> bool:
            return (await app.get_job(a.id)).status is JobStatus.COMPLETED
        await eventually(a_done, message="a never completed")
        assert (await app.get_job(child.id)).waiting_for == [b.id]
        assert not any(d == "child" for _, d in runs)
        result = await app.wait(child.id, timeout=10)
    order = [d for _, d in runs]
    assert order.index("child") > order.index("b")
    assert result == {"data": "child", "parents": {str(a.id): {"data": "a", "parents": {}},
                                                   str(b.id): {"data": "b", "parents": {}}}}


async def test_a_completed_parent_counts_as_done_and_a_missing_or_recurring_one_is_refused(app: App) -> None:
    _register(app)
    done = await app.enqueue("echo", 1)
    await _drain(app)
    child = await app.enqueue("echo", 2, after=[done.id])
    assert child.status is JobStatus.PENDING and child.waiting_for is None

    with pytest.raises(ValidationError, match="after: job 987654 not found"):
        await app.enqueue("echo", 3, after=[done.id, 987654])
    recurring = await app.enqueue("echo", schedule="1h")
    with pytest.raises(ValidationError, match=f"job {recurring.id} is recurring"):
        await app.enqueue("echo", 4, after=[recurring.id])
    with pytest.raises(ValidationError, match="after: a recurring job cannot wait"):
        await app.enqueue("echo", 5, schedule="1h", after=[done.id])
    for bad, message in (([], "at least one"), ("12", "list of job ids"), ([0], "between 1"), ([True], "integer")):
        with pytest.raises(ValidationError, match=message):
            await app.enqueue("echo", 6, after=bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="on_parent_failure: only applies"):
        await app.enqueue("echo", 7, on_parent_failure="run")
    with pytest.raises(ValidationError, match="on_parent_failure: must be one of cancel, run"):
        await app.enqueue("echo", 8, after=[done.id], on_parent_failure="ignore")
    # nothing refused was written: the recurring job, the two jobs above and nothing else
    assert len(await app.list_jobs()) == 3


async def test_a_failed_parent_fails_its_dependents_down_the_line_unless_they_ask_otherwise(app: App) -> None:
    runs = _register(app)
    parent = await app.enqueue("boom", "p", max_attempts=1)
    follows = await app.enqueue("echo", "follows", after=[parent.id])
    grandchild = await app.enqueue("echo", "grandchild", after=[follows.id])
    cancels = await app.enqueue("echo", "cancels", after=[parent.id], on_parent_failure="cancel")
    runs_anyway = await app.enqueue("echo", "anyway", after=[parent.id], on_parent_failure="run")
    await _drain(app)

    got = {j.id: j for j in await app.list_jobs()}
    assert got[parent.id].status is JobStatus.FAILED
    assert (got[follows.id].status, got[follows.id].last_error) == (JobStatus.FAILED, f"parent job {parent.id} failed")
    assert (got[grandchild.id].status, got[grandchild.id].last_error) == (
        JobStatus.FAILED, f"parent job {follows.id} failed")
    assert (got[cancels.id].status, got[cancels.id].last_error) == (
        JobStatus.CANCELLED, f"parent job {parent.id} failed")
    assert got[runs_anyway.id].status is JobStatus.COMPLETED
    assert got[runs_anyway.id].result == {"data": "anyway", "parents": {}}
    assert sorted(d for _, d in runs) == ["anyway", "p"]

    # enqueued after the parent already failed: the same rule, at once
    late = await app.enqueue("echo", "late", after=[parent.id])
    assert (late.status, late.last_error) == (JobStatus.FAILED, f"parent job {parent.id} failed")


async def test_cancelling_or_deleting_a_parent_cancels_its_waiting_dependents(app: App) -> None:
    runs = _register(app)
    parent = await app.enqueue("echo", "p", delay=3600)
    child = await app.enqueue("echo", "c", after=[parent.id])
    other = await app.enqueue("echo", "o", delay=3600)
    other_child = await app.enqueue("echo", "oc", after=[other.id])
    waiting_alone = await app.enqueue("echo", "w", after=[other.id])

    await app.cancel(parent.id)
    got = await app.get_job(child.id)
    assert (got.status, got.last_error) == (JobStatus.CANCELLED, f"parent job {parent.id} was cancelled")

    await app.cancel(waiting_alone.id)  # a waiting job can be cancelled itself
    assert (await app.get_job(waiting_alone.id)).status is JobStatus.CANCELLED

    await app.delete_job(other.id)
    assert (await app.get_job(other_child.id)).status is JobStatus.CANCELLED
    assert runs == []


async def test_a_chain_runs_in_order_and_a_group_callback_runs_after_all_members(app: App) -> None:
    runs = _register(app)
    chain = await app.chain([{"handler": "echo", "data": i} for i in range(4)])
    assert [j.status for j in chain] == [JobStatus.PENDING] + [JobStatus.WAITING] * 3
    members, callback = await app.group([{"handler": "echo", "data": f"m{i}"} for i in range(3)],
                                        then={"handler": "echo", "data": "all"})
    assert callback.parents == [m.id for m in members]
    await _drain(app)

    order = [d for _, d in runs]
    assert [d for d in order if isinstance(d, int)] == [0, 1, 2, 3]
    assert order.index("all") > max(order.index(f"m{i}") for i in range(3))
    result = (await app.get_job(callback.id)).result
    assert sorted(result["parents"]) == sorted(str(m.id) for m in members)
    first = {str(chain[0].id): {"data": 0, "parents": {}}}
    second = {str(chain[1].id): {"data": 1, "parents": first}}
    assert (await app.get_job(chain[3].id)).result["parents"] == {str(chain[2].id): {"data": 2, "parents": second}}


async def test_a_chain_or_group_with_an_invalid_step_writes_nothing(app: App) -> None:
    _register(app)
    with pytest.raises(ValidationError, match=r"steps\[2\]\.priority"):
        await app.chain([{"handler": "echo"}, {"handler": "echo"}, {"handler": "echo", "priority": "high"}])
    with pytest.raises(ValidationError, match=r"then\[0\]\.handler"):
        await app.group([{"handler": "echo"}], then={"handler": ""})
    with pytest.raises(ValidationError, match="after: job 424242 not found"):
        # refused by the database on the second step: the first one is rolled back with it
        await app.chain([{"handler": "echo"}, {"handler": "echo", "after": [424242]}])
    assert await app.list_jobs() == []


async def test_follow_ups_commit_with_the_completion_of_the_run_that_enqueued_them(app: App) -> None:
    runs = _register(app)
    # fails twice after calling ctx.enqueue: only the third, completed, run enqueues its follow-up
    job = await app.enqueue("spawn", {"fail_until": 3}, max_attempts=3)
    app.backoff = type(app.backoff)(base=0, jitter=0)
    await _drain(app)
    assert (await app.get_job(job.id)).attempts == 3
    spawned = [d for _, d in runs if isinstance(d, dict) and d.get("from") == job.id]
    assert spawned == [{"from": job.id}]
    # a follow-up may itself wait for jobs
    parent = await app.enqueue("echo", "p", delay=3600)
    await app.enqueue("spawn", {"after": [parent.id]})
    await _drain(app)
    waiting = [j for j in await app.list_jobs(status="waiting")]
    assert [(j.handler, j.parents) for j in waiting] == [("echo", [parent.id])]


async def test_a_follow_up_is_refused_at_once_when_invalid(app: App) -> None:
    @app.handler()
    async def bad(data: Any, ctx: JobContext) -> None:
        await ctx.enqueue("bad", priority="high")  # type: ignore[arg-type]

    job = await app.enqueue("bad", max_attempts=1)
    await _drain(app)
    got = await app.get_job(job.id)
    assert got.status is JobStatus.FAILED and "priority: must be an integer" in (got.last_error or "")
    assert len(await app.list_jobs()) == 1


async def test_dependents_enqueued_while_their_parents_complete_are_never_stranded(app: App) -> None:
    """The race the row lock orders: a child enqueued as its parent completes either sees the parent
    done (in its history) or is released by the parent's completion; none is left waiting."""
    runs = _register(app)
    rng = random.Random(7)
    parents: list[int] = []
    children: list[int] = []
    async with app.worker(concurrency=8):
        for _ in range(60):
            parents += (await app.enqueue_many([{"handler": "echo", "data": "p"} for _ in range(5)])).ids
            for _ in range(5):
                picks = rng.sample(parents[-15:], k=min(3, len(parents)))
                children.append((await app.enqueue("echo", "c", after=picks)).id)
            await asyncio.sleep(0)

        async def settled() -> bool:
            return not await app.list_jobs(status="waiting") and not await app.list_jobs(status="pending")
        await eventually(settled, timeout=30, message="some dependents were left waiting")
    assert {j.status for j in await _jobs(app, children)} == {JobStatus.COMPLETED}
    assert sum(1 for _, d in runs if d == "c") == len(children)


async def test_an_enqueue_after_parents_and_their_completion_never_deadlock(app: App) -> None:
    """The enqueue locks its parents in id order, as a completion does, whatever plan reads them: here a
    sequential scan, which meets the parent moved to the end of the heap first. A completion holds the lower
    parent while the enqueue waits for it, then takes the higher one: had the enqueue locked that one first,
    each would wait for the other until PostgreSQL failed one of them (DeadlockDetectedError)."""
    _register(app)
    a, b = (await app.enqueue_many([{"handler": "echo", "data": "p"} for _ in range(2)])).ids
    s = app.schema
    async with app.pool.acquire() as completion, app.pool.acquire() as enqueuing:
        await completion.execute(f"UPDATE {s}.jobs SET priority = 1 WHERE id = $1", a)  # a's new version: after b's
        await enqueuing.execute("SET enable_indexscan = off; SET enable_bitmapscan = off")
        async with completion.transaction():
            await completion.execute(f"SELECT FROM {s}.jobs WHERE id = $1 FOR UPDATE", a)
            child = asyncio.create_task(app.enqueue("echo", "c", after=[a, b], connection=enqueuing))

            async def enqueue_waits_for_a_lock() -> bool:
                return bool(await app.pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
                    f"%INSERT INTO {s}.jobs%"))
            await eventually(enqueue_waits_for_a_lock, message="the enqueue did not wait for the parent's lock")
            await completion.execute(f"SELECT FROM {s}.jobs WHERE id = $1 FOR UPDATE", b)
        job = await asyncio.wait_for(child, 10)
        await enqueuing.execute("RESET ALL")
    assert job.status is JobStatus.WAITING and set(job.waiting_for or ()) == {a, b}


@pytest.mark.usefixtures("ledger")
async def test_several_processes_run_each_dependent_once_after_all_its_parents(
        app: App, procs: Procs) -> None:  # noqa: F811 (the fixture)
    for _ in range(3):
        procs.start(4)
    rng = random.Random(11)
    layer = [j.id for j in await app.enqueue_many([{"handler": "record", "data": {"sleep": 0.05}}
                                                    for _ in range(12)])]
    everyone = list(layer)
    edges: dict[int, list[int]] = {}
    for _ in range(3):
        next_layer = []
        for _ in range(10):
            picks = rng.sample(layer, k=3)
            job = await app.enqueue("record", {"sleep": 0.02}, after=picks)
            edges[job.id] = picks
            next_layer.append(job.id)
        layer, everyone = next_layer, everyone + next_layer

    async def all_completed() -> bool:
        return {j.status for j in await _jobs(app, everyone)} == {JobStatus.COMPLETED}
    await eventually(all_completed, timeout=60, message="the graph did not complete")

    async with app.pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT job_id, started_at, finished_at FROM {app.schema}.ledger")
    by_job: dict[int, list[Any]] = {}
    for r in rows:
        by_job.setdefault(r["job_id"], []).append(r)
    assert sorted(by_job) == sorted(everyone) and all(len(v) == 1 for v in by_job.values()), "each ran once"
    for child, parent_ids in edges.items():
        assert by_job[child][0]["started_at"] >= max(by_job[p][0]["finished_at"] for p in parent_ids)
