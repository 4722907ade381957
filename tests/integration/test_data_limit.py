"""``App(max_data_bytes=...)``: the size limit on job data and handler results.

Sizes are those of the UTF-8 JSON text that is stored: a string of n ASCII characters
encodes to n + 2 bytes (its quotes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from aiojobs_pg import App, Backoff, JobContext, JobStatus, RunStatus, ValidationError
from aiojobs_pg.errors import DataTooLarge
from tests.helpers import eventually

LIMIT = 100
#: JSON of exactly LIMIT bytes, and one byte over it
AT_LIMIT = "x" * (LIMIT - 2)
OVER_LIMIT = "x" * (LIMIT - 1)
DEFAULT_LIMIT = 1_048_576


@pytest.fixture
async def small(pg_dsn: str, own_schema: str) -> AsyncIterator[App]:
    """An open App whose data and results may be at most LIMIT bytes of JSON."""
    app = App(pg_dsn, schema=own_schema, max_data_bytes=LIMIT, lease=3, poll_interval=0.2, maintenance_interval=0.5,
              drain_timeout=5, backoff=Backoff(base=0.05, factor=1, cap=0.05, jitter=0))
    async with app:
        yield app


async def count_jobs(app: App) -> int:
    value: int = await app.pool.fetchval(f"SELECT count(*) FROM {app.schema}.all_jobs")
    return value


def assert_too_large(exc: ValidationError, field: str, size: int, limit: int = LIMIT) -> None:
    assert isinstance(exc, DataTooLarge)
    assert (exc.field, exc.size, exc.limit) == (field, size, limit)
    assert f"{size} bytes" in exc.message and f"limit is {limit} bytes" in exc.message


# --- enqueue ---

async def test_the_default_limit_refuses_data_over_one_mebibyte(app: App) -> None:
    job = await app.enqueue("h", "x" * (DEFAULT_LIMIT - 2))
    assert (await app.get_job(job.id)).data == job.data
    for data, size in [("x" * (DEFAULT_LIMIT - 1), DEFAULT_LIMIT + 1), ("x" * 10_000_000, 10_000_002)]:
        with pytest.raises(ValidationError) as info:
            await app.enqueue("h", data)
        assert_too_large(info.value, "data", size, DEFAULT_LIMIT)
    assert await count_jobs(app) == 1


# Plain enqueues and enqueues with options take different paths (prepare_plain, prepare).
ENQUEUE_OPTIONS: list[dict[str, Any]] = [{}, {"queue": "q", "priority": 3}, {"name": "n", "delay": 60},
                                         {"dedup_key": "k"}, {"schedule": "1h"}]


@pytest.mark.parametrize("options", ENQUEUE_OPTIONS, ids=repr)
async def test_enqueue_over_the_limit_writes_nothing(small: App, options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        await small.enqueue("h", OVER_LIMIT, **options)
    assert_too_large(info.value, "data", LIMIT + 1)
    # Twice: a kind of job validated once is not trusted with the next job's data.
    with pytest.raises(DataTooLarge):
        await small.enqueue("h", {"k": OVER_LIMIT}, **options)
    assert await count_jobs(small) == 0
    assert (await small.enqueue("h", AT_LIMIT, **options)).data == AT_LIMIT


async def test_the_limit_counts_utf8_bytes_not_characters(small: App) -> None:
    two_bytes = "é" * ((LIMIT - 2) // 2)  # 49 characters, 98 bytes: 100 bytes of JSON
    assert (await small.enqueue("h", two_bytes)).data == two_bytes
    with pytest.raises(ValidationError) as info:
        await small.enqueue("h", two_bytes + "é")
    assert_too_large(info.value, "data", LIMIT + 2)


async def test_enqueue_in_a_transaction_refuses_before_writing_and_leaves_the_transaction_usable(small: App) -> None:
    async with small.pool.acquire() as conn, conn.transaction():
        kept = await small.enqueue("h", AT_LIMIT, connection=conn)
        with pytest.raises(DataTooLarge):
            await small.enqueue("h", OVER_LIMIT, connection=conn)
        with pytest.raises(DataTooLarge):
            await small.enqueue_many([{"handler": "h"}, {"handler": "h", "data": OVER_LIMIT}], connection=conn)
    assert [j.id for j in await small.list_jobs()] == [kept.id]


# A batch of one kind (Uniform), a batch of several kinds, a batch with an item that has options.
BATCHES: list[list[dict[str, Any]]] = [
    [{"handler": "h", "data": i} for i in range(3)],
    [{"handler": "h", "data": i, "queue": f"q{i}"} for i in range(3)],
    [{"handler": "h", "data": i, "name": f"n{i}"} for i in range(3)],
]


@pytest.mark.parametrize("batch", BATCHES, ids=["one-kind", "several-kinds", "with-options"])
async def test_enqueue_many_names_the_item_over_the_limit_and_writes_nothing(small: App,
                                                                             batch: list[dict[str, Any]]) -> None:
    items = [dict(item) for item in batch]
    items[2]["data"] = OVER_LIMIT
    with pytest.raises(ValidationError) as info:
        await small.enqueue_many(items)
    assert_too_large(info.value, "jobs[2].data", LIMIT + 1)
    assert await count_jobs(small) == 0
    items[2]["data"] = AT_LIMIT
    assert [j.data for j in await small.enqueue_many(items)] == [0, 1, AT_LIMIT]


async def test_a_periodic_declaration_over_the_limit_is_refused(small: App) -> None:
    with pytest.raises(ValidationError) as info:
        @small.periodic("1h", data=OVER_LIMIT)
        async def nightly(data: str) -> None: ...
    assert_too_large(info.value, "data", LIMIT + 1)
    assert small.periodic_jobs == {}


# --- update ---

async def test_update_over_the_limit_changes_nothing(small: App) -> None:
    job = await small.enqueue("h", {"keep": 1}, delay=3600)
    with pytest.raises(ValidationError) as info:
        await small.update_job(job.id, data=OVER_LIMIT, priority=5)
    assert_too_large(info.value, "data", LIMIT + 1)
    async with small.pool.acquire() as conn:  # the admin API on a connection has the app's limit too
        with pytest.raises(DataTooLarge):
            await small.admin(conn).update_job(job.id, data=OVER_LIMIT)
    assert await small.get_job(job.id) == job
    assert (await small.update_job(job.id, data=AT_LIMIT)).data == AT_LIMIT


# --- results ---

async def test_a_result_over_the_limit_is_not_stored_and_fails_the_attempt(small: App) -> None:
    calls: list[int] = []

    @small.handler()
    async def bloated(data: None, ctx: JobContext) -> str:
        calls.append(ctx.attempt)
        return OVER_LIMIT

    @small.handler()
    async def just_fits(data: None) -> str:
        return AT_LIMIT

    job = await small.enqueue("bloated", max_attempts=2)
    fits = await small.enqueue("just_fits")
    async with small.worker():
        async def settled() -> bool:
            return {(await small.get_job(j.id)).status for j in (job, fits)} <= {JobStatus.FAILED,
                                                                                 JobStatus.COMPLETED}
        await eventually(settled, message="the jobs never finished")
    failed = await small.get_job(job.id)
    # The usual retry policy: two attempts, both failed, and then the dead letter.
    assert (failed.status, failed.attempts, failed.result) == (JobStatus.FAILED, 2, None)
    assert calls == [1, 2]
    expected = f"result too large: the handler returned {LIMIT + 1} bytes of JSON, over the limit of {LIMIT} bytes"
    assert expected in (failed.last_error or "")
    runs = await small.job_history(job.id)
    assert [(r.attempt, r.status, r.result) for r in runs] == [(1, RunStatus.FAILED, None),
                                                                (2, RunStatus.FAILED, None)]
    assert all(expected in (r.error or "") for r in runs)
    done = await small.get_job(fits.id)
    assert (done.status, done.result) == (JobStatus.COMPLETED, AT_LIMIT)


# --- no limit ---

async def test_none_turns_the_limit_off(pg_dsn: str, own_schema: str) -> None:
    big = "x" * (DEFAULT_LIMIT + 10)
    app = App(pg_dsn, schema=own_schema, max_data_bytes=None, poll_interval=0.2)

    @app.handler()
    async def echo(data: str) -> str:
        return data

    async with app:
        job = await app.enqueue("echo", big)
        [other] = await app.enqueue_many([{"handler": "echo", "data": big}])
        await app.update_job(other.id, data=big + "y")
        await app.run_worker(burst=True, handle_signals=False)
        assert (await app.get_job(job.id)).result == big
        assert (await app.get_job(other.id)).result == big + "y"
