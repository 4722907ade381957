"""dedup_window: an enqueue returns the job with its dedup key created within the window, whatever its
status (Oban's unique period), exactly under concurrency; ``Job.existing`` says which answer came back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from aiojobs_pg import App, JobStatus, ValidationError
from tests.helpers import eventually
from tests.integration.test_cli import _base_env, run_cli
from tests.integration.test_fleet import service


@pytest.fixture
def cli_env(pg_dsn: str, schema_name: str) -> dict[str, str]:
    """The environment of a CLI process pointed at the test schema (as tests/integration/test_cli.py's)."""
    return {**_base_env(), "AIOJOBS_PG_DSN": pg_dsn, "AIOJOBS_PG_SCHEMA": schema_name}


@pytest.fixture
def handlers(app: App) -> App:
    @app.handler()
    async def h(data: Any) -> Any:
        return data

    @app.handler()
    async def broken(data: Any) -> None:
        raise RuntimeError("always")

    return app


async def count_keyed(app: App, key: str) -> int:
    """Jobs with ``key`` wherever they are kept (live, parked, or completed in the history)."""
    value: int = await app.pool.fetchval(f"SELECT count(*) FROM {app.schema}.all_jobs WHERE dedup_key = $1", key)
    return value


async def drain(app: App) -> None:
    await app.run_worker(burst=True, handle_signals=False)


async def test_a_completed_job_within_the_window_is_returned(handlers: App) -> None:
    app = handlers
    first = await app.enqueue("h", {"n": 1}, dedup_key="acct-7", dedup_window="1h")
    assert not first.existing
    await drain(app)
    again = await app.enqueue("h", {"n": 2}, dedup_key="acct-7", dedup_window="1h")
    assert (again.id, again.status, again.result, again.existing) == (first.id, JobStatus.COMPLETED, {"n": 1}, True)
    assert again == await app.get_job(first.id)  # existing is not compared: the same job either way
    # Without a window, the key is only held while the job is live: a new job.
    fresh = await app.enqueue("h", {"n": 3}, dedup_key="acct-7")
    assert fresh.id != first.id and not fresh.existing
    assert await count_keyed(app, "acct-7") == 2


async def test_failed_and_cancelled_jobs_within_the_window_are_returned(handlers: App) -> None:
    app = handlers
    failed = await app.enqueue("broken", dedup_key="f", max_attempts=1)
    await drain(app)
    assert (await app.get_job(failed.id)).status is JobStatus.FAILED
    hit = await app.enqueue("broken", dedup_key="f", dedup_window="10m")
    assert (hit.id, hit.status, hit.existing) == (failed.id, JobStatus.FAILED, True)

    parked = await app.enqueue("h", dedup_key="c", delay=3600)
    await app.cancel(parked.id)
    hit = await app.enqueue("h", dedup_key="c", dedup_window=600)
    assert (hit.id, hit.status, hit.existing) == (parked.id, JobStatus.CANCELLED, True)
    assert await count_keyed(app, "f") == await count_keyed(app, "c") == 1


async def test_a_job_created_before_the_window_does_not_count(handlers: App) -> None:
    app = handlers
    old = await app.enqueue("h", dedup_key="k", dedup_window="1h")
    await drain(app)
    await app.pool.execute(f"UPDATE {app.schema}.job_runs SET created_at = created_at - interval '2 hours' "
                           "WHERE job_id = $1 AND handler IS NOT NULL", old.id)
    # The window is the enqueue's: a wider one still finds it.
    assert (await app.enqueue("h", dedup_key="k", dedup_window="3h")).id == old.id
    new = await app.enqueue("h", dedup_key="k", dedup_window="1h")
    assert new.id != old.id and not new.existing and new.status is JobStatus.PENDING
    # Now the live job holds the key, whatever the window.
    assert (await app.enqueue("h", dedup_key="k", dedup_window="3h")).id == new.id

    cancelled = await app.enqueue("h", dedup_key="c", delay=60)
    await app.cancel(cancelled.id)
    await app.pool.execute(f"UPDATE {app.schema}.jobs SET created_at = now() - interval '2 hours' WHERE id = $1",
                           cancelled.id)
    assert (await app.enqueue("h", dedup_key="c", dedup_window="1h")).id != cancelled.id


async def test_the_live_holder_is_marked_existing_without_a_window_too(handlers: App) -> None:
    app = handlers
    first = await app.enqueue("h", dedup_key="u:1")
    second = await app.enqueue("h", {"other": True}, dedup_key="u:1")
    windowed = await app.enqueue("h", dedup_key="u:1", dedup_window="1d")
    assert (first.existing, second.existing, windowed.existing) == (False, True, True)
    assert second.id == windowed.id == first.id and second.data is None
    assert not (await app.get_job(first.id)).existing  # read back: not stored


async def test_concurrent_enqueues_with_a_window_create_one_job_per_key(handlers: App) -> None:
    """Many enqueues per key from three Apps (three pools) at once, while a worker completes the jobs as
    fast as they come: a job that completed between one enqueue's lookup and another's would be missed
    by anything but a lookup made under the key's lock."""
    app = handlers
    keys = [f"race-{k}" for k in range(15)]
    async with service(app) as one, service(app) as two:
        apps = [app, one, two]
        async with app.worker(concurrency=20):
            calls = [apps[i % 3].enqueue("h", {"i": i}, dedup_key=key, dedup_window="1h")
                     for key in keys for i in range(12)]
            jobs = await asyncio.gather(*calls)
    for k, key in enumerate(keys):
        mine = jobs[k * 12:(k + 1) * 12]
        assert len({j.id for j in mine}) == 1, key
        assert sum(not j.existing for j in mine) == 1, key
        assert await count_keyed(app, key) == 1, key


async def test_concurrent_transactions_with_a_window_create_one_job_per_key(handlers: App) -> None:
    """The adversarial form: each enqueue runs in a transaction that, when it created the job, cancels it
    before committing, so the job is never live once committed and the live jobs' unique index stops no
    one. Only the key's lock, held to the commit, and a lookup made after it keep each key to one job."""
    app = handlers

    async def enqueue(target: App, key: str, i: int) -> tuple[int, bool]:
        async with target.pool.acquire() as conn, conn.transaction():
            job = await target.enqueue("h", {"i": i}, dedup_key=key, dedup_window="1h", connection=conn)
            if not job.existing:
                await target.admin(conn).cancel(job.id)
        return job.id, job.existing

    keys = [f"tx-{k}" for k in range(8)]
    async with service(app) as one, service(app) as two:
        apps = [app, one, two]
        results = await asyncio.gather(*(enqueue(apps[i % 3], key, i) for key in keys for i in range(8)))
    for k, key in enumerate(keys):
        mine = results[k * 8:(k + 1) * 8]
        assert len({job_id for job_id, _ in mine}) == 1 and sum(not e for _, e in mine) == 1, (key, mine)
        assert await count_keyed(app, key) == 1, key


async def test_an_enqueue_waits_for_one_in_flight_and_then_sees_its_job(handlers: App) -> None:
    """Deterministic form of the race: the first enqueue's transaction holds the key's lock while its job stops
    being live (cancelled here; a completion does the same). The second enqueue waits for that transaction,
    then finds the job, instead of adding a second one that no live job's unique index would stop."""
    app = handlers
    lock = (f"aiojobs_pg:dedup:{app.schema}", "k")
    async with service(app) as other, app.pool.acquire() as conn:
        async with conn.transaction():
            first = await app.enqueue("h", dedup_key="k", dedup_window="1h", connection=conn)
            await app.admin(conn).cancel(first.id)
            second = asyncio.create_task(other.enqueue("h", dedup_key="k", dedup_window="1h"))

            async def blocked() -> bool:
                waiting: int = await app.pool.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND classid = hashtext($1)::oid AND objid = hashtext($2)::oid AND objsubid = 2", *lock)
                return waiting == 1

            await eventually(blocked, message="the second enqueue never waited for the key's lock")
            assert not second.done()
        again = await asyncio.wait_for(second, 10)
    assert (again.id, again.status, again.existing) == (first.id, JobStatus.CANCELLED, True)
    assert await count_keyed(app, "k") == 1


async def test_a_rolled_back_enqueue_leaves_the_key_free(handlers: App) -> None:
    app = handlers
    async with app.pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await app.enqueue("h", dedup_key="tx", dedup_window="1h", connection=conn)
        await tx.rollback()
    job = await app.enqueue("h", dedup_key="tx", dedup_window="1h")
    assert not job.existing and await count_keyed(app, "tx") == 1


async def test_enqueue_many_with_windows(handlers: App) -> None:
    app = handlers
    done = await app.enqueue("h", "done", dedup_key="a")
    await drain(app)
    live = await app.enqueue("h", "live", dedup_key="b", delay=3600)
    jobs = await app.enqueue_many([
        {"handler": "h", "data": 1, "dedup_key": "a", "dedup_window": "1h"},  # the completed one
        {"handler": "h", "data": 2, "dedup_key": "a"},  # no window: only a live job holds the key, so a new one
        {"handler": "h", "data": 3, "dedup_key": "b", "dedup_window": "1h"},  # the live one
        {"handler": "h", "data": 4, "dedup_key": "c", "dedup_window": "1h"},  # new
        {"handler": "h", "data": 5},
        {"handler": "h", "data": 6, "dedup_key": "c", "dedup_window": "1h"},  # item 3's
    ])
    assert [jobs[0].id, jobs[2].id] == [done.id, live.id] and jobs[1].id not in (done.id, live.id)
    assert [j.existing for j in jobs] == [True, False, True, False, False, False]
    assert jobs[0].status is JobStatus.COMPLETED and (jobs[1].data, jobs[1].status) == (2, JobStatus.PENDING)
    assert jobs[3].id == jobs[5].id and jobs[3].data == 4
    assert [await count_keyed(app, key) for key in "abc"] == [2, 1, 1]
    again = await app.enqueue_many([{"handler": "h", "dedup_key": "c", "dedup_window": "1h"}])
    assert again[0].id == jobs[3].id and again[0].existing


@pytest.mark.parametrize(("kwargs", "field", "fragment"), [
    ({"dedup_window": "1h"}, "dedup_window", "needs a dedup_key"),
    ({"dedup_key": "k", "dedup_window": 0}, "dedup_window", ""),
    ({"dedup_key": "k", "dedup_window": "-5m"}, "dedup_window", ""),
    ({"dedup_key": "k", "dedup_window": "soon"}, "dedup_window", ""),
    ({"dedup_key": "k", "dedup_window": "40000d"}, "dedup_window", "at most"),
])
async def test_bad_windows_are_refused(handlers: App, kwargs: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment or None) as refused:
        await handlers.enqueue("h", **kwargs)
    assert refused.value.field == field
    with pytest.raises(ValidationError) as in_batch:
        await handlers.enqueue_many([{"handler": "h"}, {"handler": "h", **kwargs}])
    assert in_batch.value.field == f"jobs[1].{field}"
    assert await handlers.pool.fetchval(f"SELECT count(*) FROM {handlers.schema}.jobs") == 0


async def test_the_cli_takes_a_window_and_says_when_it_added_nothing(handlers: App, cli_env: dict[str, str]) -> None:
    app = handlers
    done = await app.enqueue("h", dedup_key="nightly")
    await drain(app)
    result = await run_cli(cli_env, "jobs", "enqueue", "h", "--dedup-key", "nightly", "--dedup-window", "1h")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"not added: job {done.id} holds the dedup key 'nightly' (completed)"
    result = await run_cli(cli_env, "jobs", "enqueue", "h", "--dedup-key", "nightly", "--dedup-window", "1h",
                           "--json")
    assert result.returncode == 0, result.stderr
    assert (json.loads(result.stdout)["id"], json.loads(result.stdout)["existing"]) == (done.id, True)
    result = await run_cli(cli_env, "jobs", "enqueue", "h", "--dedup-window", "1h")
    assert result.returncode != 0 and "dedup_window" in result.stderr and "needs a dedup_key" in result.stderr
    assert await count_keyed(app, "nightly") == 1
