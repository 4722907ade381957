"""Enqueue from other drivers: the schema's SQL function (migration 0017) and the psycopg 3 / SQLAlchemy
helpers of aiojobs_pg.drivers, each in the caller's transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from aiojobs_pg import App, Backoff, JobNotFound, JobStatus, ValidationError
from aiojobs_pg.drivers import ENQUEUE_SQLSTATE, enqueue_psycopg, enqueue_sqlalchemy
from aiojobs_pg.errors import DataTooLarge
from tests.helpers import eventually


@pytest.fixture
async def conn(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection of the test's own: a client that knows nothing of aiojobs_pg."""
    connection = await asyncpg.connect(pg_dsn)
    try:
        yield connection
    finally:
        await connection.close()


async def status_of(app: App, job_id: int) -> JobStatus | None:
    try:
        return (await app.get_job(job_id)).status
    except JobNotFound:
        return None


async def job_count(app: App) -> int:
    value: int = await app.pool.fetchval(f"SELECT count(*) FROM {app.schema}.jobs")
    return value


def sqlalchemy_url(dsn: str, driver: str) -> str:
    return dsn.replace("postgresql://", f"postgresql+{driver}://", 1)


# --- the SQL function, from a client of its own ---

async def test_a_committed_call_runs_and_a_rolled_back_one_leaves_nothing(app: App, conn: asyncpg.Connection) -> None:
    seen: list[Any] = []

    @app.handler()
    async def record(data: Any) -> None:
        seen.append(data)

    async with conn.transaction():
        job_id = await conn.fetchval(f"SELECT {app.schema}.enqueue('record', $1::jsonb)", '{"n": 1}')
    with pytest.raises(RuntimeError):
        async with conn.transaction():
            await conn.fetchval(f"SELECT {app.schema}.enqueue('record', $1::jsonb)", '{"n": 2}')
            raise RuntimeError("roll back")
    assert await job_count(app) == 1
    await app.run_worker(burst=True, handle_signals=False)
    assert seen == [{"n": 1}]
    assert await status_of(app, job_id) is JobStatus.COMPLETED


async def test_its_notification_wakes_an_idle_worker(app: App, conn: asyncpg.Connection) -> None:
    ran = asyncio.Event()

    @app.handler()
    async def ping(data: None) -> None:
        ran.set()

    async with app.worker(poll_interval=30) as worker:
        await eventually(lambda: worker.notifier.connected, message="listener never connected")
        await asyncio.wait_for(worker.signals.wait("claim", 1), 5)  # startup claim done: only a notify wakes it
        async with conn.transaction():
            await conn.execute(f"SELECT {app.schema}.enqueue('ping')")
            with pytest.raises(TimeoutError):  # uncommitted: the notification waits for the commit
                await asyncio.wait_for(ran.wait(), timeout=0.3)
        await asyncio.wait_for(ran.wait(), timeout=3)


async def test_a_deferred_job_tells_idle_workers_when_it_is_due(app: App, conn: asyncpg.Connection) -> None:
    ran = asyncio.Event()

    @app.handler()
    async def later(data: None) -> None:
        ran.set()

    async with app.worker(poll_interval=30) as worker:
        await eventually(lambda: worker.notifier.connected, message="listener never connected")
        await asyncio.wait_for(worker.signals.wait("claim", 1), 5)
        started = asyncio.get_running_loop().time()
        await conn.execute(f"SELECT {app.schema}.enqueue('later', delay => interval '0.5 seconds')")
        await asyncio.wait_for(ran.wait(), timeout=5)  # the due hint, not the 30 s poll
    assert asyncio.get_running_loop().time() - started >= 0.5


@pytest.mark.parametrize(("arguments", "field", "reason"), [
    ("''", "handler", "must not be empty"),
    ("NULL", "handler", "must not be empty"),
    ("repeat('h', 501)", "handler", "is 501 characters long; the limit is 500"),
    ("'h', queue => ' '", "queue", "must not be empty"),
    ("'h', queue => repeat('q', 101)", "queue", "the limit is 100"),
    ("'h', name => repeat('n', 501)", "name", "the limit is 500"),
    ("'h', dedup_key => repeat('k', 501)", "dedup_key", "the limit is 500"),
    ("'h', concurrency_key => ''", "concurrency_key", "must not be empty"),
    ("'h', priority => NULL", "priority", "must not be null"),
    ("'h', max_attempts => 0", "max_attempts", "between 1 and 10000"),
    ("'h', max_attempts => 10001", "max_attempts", "between 1 and 10000"),
    ("'h', timeout => interval '0'", "timeout", "must be more than zero"),
    ("'h', delay => interval '-1 s'", "delay", "must not be negative"),
    ("'h', delay => interval '36601 days'", "delay", "at most 36600 days"),
    ("'h', delay => interval '1 s', run_at => now()", "delay", "either delay or run_at"),
    ("'h', run_at => 'infinity'", "run_at", "out of range"),
    ("'h', run_at => '10000-01-01'", "run_at", "out of range"),
    ("'h', data => (repeat('[', 257) || repeat(']', 257))::jsonb", "data", "nested deeper than 256 levels"),
    ("'h', data => to_jsonb(repeat('x', 1048576))", "data", "the limit is 1048576 bytes"),
    ("'h', data => '[1, 2]', max_data_bytes => 5", "data", "is 6 bytes as JSON; the limit is 5"),
    ("'h', after => '{}'", "after", "at least one job"),
    ("'h', after => ARRAY[1, NULL]", "after", "list of job ids"),
    ("'h', after => ARRAY[0]", "after", "between 1 and"),
    ("'h', after => ARRAY[424242]", "after", "job 424242 not found"),
    ("'h', after => (SELECT array_agg(g) FROM generate_series(1, 1001) g)", "after", "the limit is 1000"),
    ("'h', on_parent_failure => 'run'", "on_parent_failure", "only applies to a job with after"),
    ("'h', on_parent_failure => 'later'", "on_parent_failure", "must be one of cancel, run"),
    ("'h', dedup_window => interval '1 h'", "dedup_window", "needs a dedup_key"),
    ("'h', dedup_key => 'k', dedup_window => interval '0'", "dedup_window", "more than zero"),
    ("'h', backoff => '{\"bas\": 1}'", "backoff", "unknown key 'bas'"),
    ("'h', backoff => '{\"base\": \"1\"}'", "backoff", "base must be a finite number"),
    ("'h', backoff => '{\"factor\": 0.5}'", "backoff", "factor >= 1"),
    ("'h', backoff => '[1]'", "backoff", "must be a number of seconds"),
])
async def test_a_refused_argument_is_named(app: App, conn: asyncpg.Connection, arguments: str, field: str,
                                           reason: str) -> None:
    with pytest.raises(asyncpg.PostgresError) as caught:
        await conn.fetchval(f"SELECT {app.schema}.enqueue({arguments})")
    assert caught.value.sqlstate == ENQUEUE_SQLSTATE
    assert caught.value.column_name == field
    message = caught.value.args[0]
    assert message.startswith(f"{field}: ") and reason in message, message
    assert await job_count(app) == 0


async def test_a_taken_dedup_key_returns_the_live_job(app: App, conn: asyncpg.Connection) -> None:
    first = await conn.fetchval(f"SELECT {app.schema}.enqueue('h', dedup_key => 'k')")
    assert await conn.fetchval(f"SELECT {app.schema}.enqueue('h', dedup_key => 'k')") == first
    held = await app.enqueue("h", dedup_key="k")  # the key is the same whoever enqueues
    assert held.existing and held.id == first
    await app.cancel(first)
    second = await conn.fetchval(f"SELECT {app.schema}.enqueue('h', dedup_key => 'k')")
    assert second != first  # a cancelled job holds no key...
    await app.cancel(second)
    window = f"SELECT {app.schema}.enqueue('h', dedup_key => 'k', dedup_window => interval '1 hour')"
    assert await conn.fetchval(window) == second  # ...but within a window, any job created with it does


async def test_a_job_after_its_parents_waits_for_them(app: App, conn: asyncpg.Connection) -> None:
    @app.handler()
    async def step(data: int) -> int:
        return data

    parent = await conn.fetchval(f"SELECT {app.schema}.enqueue('step', '1')")
    child = await conn.fetchval(f"SELECT {app.schema}.enqueue('step', '2', after => ARRAY[$1, $1]::bigint[])", parent)
    job = await app.get_job(child)
    assert job.status is JobStatus.WAITING and job.parents == [parent]
    await app.run_worker(burst=True, handle_signals=False)
    assert await status_of(app, child) is JobStatus.COMPLETED


async def test_every_argument_is_stored_as_app_enqueue_stores_it(app: App, conn: asyncpg.Connection) -> None:
    parent = await app.enqueue("h")
    run_at = datetime.now(UTC) + timedelta(hours=1)
    args = dict(name="n", queue="q", priority=-5, max_attempts=7, run_at=run_at, dedup_key="d1",
                after=[parent.id], on_parent_failure="run", concurrency_key="acme")
    ours = await app.enqueue("h", {"a": [1, "é"]}, timeout=2.5, backoff=Backoff(base=2, factor=3), **args)
    args.update(dedup_key="d2")
    theirs_id = await conn.fetchval(
        f"""SELECT {app.schema}.enqueue('h', '{{"a": [1, "é"]}}', name => $1, queue => $2, priority => $3,
               max_attempts => $4, run_at => $5, dedup_key => $6, after => $7, on_parent_failure => $8,
               concurrency_key => $9, timeout => interval '2.5 s', backoff => '{{"base": 2, "factor": 3}}')""",
        *args.values())
    theirs = await app.get_job(theirs_id)
    differ = {"id", "dedup_key", "created_at", "updated_at"}
    mine, other = asdict(ours), asdict(theirs)
    assert {k: v for k, v in other.items() if k not in differ} == {k: v for k, v in mine.items() if k not in differ}
    # a fixed backoff given as seconds, and the function's defaults
    fixed = await app.get_job(await conn.fetchval(f"SELECT {app.schema}.enqueue('h', backoff => '5')"))
    assert fixed.backoff == Backoff.fixed(5)
    assert (fixed.queue, fixed.priority, fixed.max_attempts, fixed.data) == ("default", 0, 3, None)


# --- psycopg 3 ---

async def test_psycopg_sync_in_the_callers_transaction(app: App, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as pconn:
        job_id = enqueue_psycopg(pconn, "h", {"x": 1}, schema=app.schema, queue="mail", delay=60)
        with pconn.cursor() as cur:
            from_cursor = enqueue_psycopg(cur, "h", schema=app.schema, dedup_key="once")
            assert enqueue_psycopg(cur, "h", schema=app.schema, dedup_key="once") == from_cursor
        assert await job_count(app) == 0  # not committed yet
        pconn.commit()
        rolled_back = enqueue_psycopg(pconn, "h", schema=app.schema)
        pconn.rollback()
        with pytest.raises(ValidationError) as caught:  # refused by the server: the trigger's parents check
            enqueue_psycopg(pconn, "h", schema=app.schema, after=[424242])
        assert (caught.value.field, caught.value.message) == ("after", "job 424242 not found")
        pconn.rollback()
        with pytest.raises(ValidationError) as caught:  # refused before sending, as App.enqueue refuses it
            enqueue_psycopg(pconn, "h", "\x00", schema=app.schema)
        assert caught.value.field == "data"
    job = await app.get_job(job_id)
    assert (job.data, job.queue, job.status) == ({"x": 1}, "mail", JobStatus.PENDING)
    assert timedelta(seconds=58) < job.next_run_at - job.created_at <= timedelta(seconds=60)
    assert await status_of(app, from_cursor) is JobStatus.PENDING
    assert await status_of(app, rolled_back) is None


async def test_the_helpers_send_every_option_as_app_enqueue_stores_it(app: App, pg_dsn: str) -> None:
    parent = await app.enqueue("h")
    options: dict[str, Any] = dict(name="n", queue="q", priority=2, max_attempts=4, timeout="90s", dedup_key="d",
                                   dedup_window="1h", after=[parent], on_parent_failure="cancel",
                                   backoff=Backoff.fixed(7), concurrency_key="acme", delay=timedelta(minutes=3))
    ours = await app.enqueue("h", {"z": None}, **options)
    await app.delete_job(ours.id)  # frees the key: the helper's job is a new one, not ours
    with psycopg.connect(pg_dsn) as pconn:
        theirs_id = enqueue_psycopg(pconn, "h", {"z": None}, schema=app.schema, **options)
    theirs = await app.get_job(theirs_id)
    differ = {"id", "created_at", "updated_at", "next_run_at"}
    assert ({k: v for k, v in asdict(theirs).items() if k not in differ}
            == {k: v for k, v in asdict(ours).items() if k not in differ})
    assert theirs.next_run_at - theirs.created_at == timedelta(minutes=3)


async def test_psycopg_async_in_the_callers_transaction(app: App, pg_dsn: str) -> None:
    ran = asyncio.Event()

    @app.handler()
    async def ping(data: dict[str, int]) -> None:
        ran.set()

    async with app.worker(poll_interval=30) as worker:
        await asyncio.wait_for(worker.signals.wait("claim", 1), 5)
        async with await psycopg.AsyncConnection.connect(pg_dsn) as pconn:
            async with pconn.transaction():
                job_id = await enqueue_psycopg(pconn, "ping", {"n": 1}, schema=app.schema)
                async with pconn.cursor() as cur:
                    assert await enqueue_psycopg(cur, "ping", schema=app.schema, dedup_key="k") > job_id
            with pytest.raises(ValidationError) as caught:
                async with pconn.transaction():
                    await enqueue_psycopg(pconn, "ping", schema=app.schema, max_attempts=0)
            assert caught.value.field == "max_attempts"
        await asyncio.wait_for(ran.wait(), timeout=3)  # woken by the function's notification
    assert await status_of(app, job_id) in (JobStatus.RUNNING, JobStatus.COMPLETED)


# --- SQLAlchemy ---

@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
async def test_sqlalchemy_async_session(app: App, pg_dsn: str, driver: str) -> None:
    engine = create_async_engine(sqlalchemy_url(pg_dsn, driver))
    try:
        async with AsyncSession(engine) as session:
            async with session.begin():
                job_id = await enqueue_sqlalchemy(session, "h", [1, 2], schema=app.schema, priority=3,
                                                  run_at=datetime.now(UTC) + timedelta(minutes=5),
                                                  timeout=timedelta(seconds=30))
                await session.execute(text(f"SELECT {app.schema}.enqueue('h', queue => 'other')"))
            with pytest.raises(ValidationError) as caught:
                async with session.begin():
                    await enqueue_sqlalchemy(session, "h", schema=app.schema, after=[424242])
            assert (caught.value.field, caught.value.message) == ("after", "job 424242 not found")
            with pytest.raises(RuntimeError):
                async with session.begin():
                    rolled_back = await enqueue_sqlalchemy(session, "h", schema=app.schema)
                    raise RuntimeError("roll back")
        async with engine.connect() as connection:  # an AsyncConnection too
            on_connection = await enqueue_sqlalchemy(connection, "h", schema=app.schema, name="c")
            await connection.commit()
    finally:
        await engine.dispose()
    job = await app.get_job(job_id)
    assert (job.data, job.priority, job.timeout, job.status) == ([1, 2], 3, 30.0, JobStatus.PENDING)
    assert await status_of(app, rolled_back) is None
    assert (await app.get_job(on_connection)).name == "c"
    assert await job_count(app) == 3


async def test_sqlalchemy_sync_session(app: App, pg_dsn: str) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(sqlalchemy_url(pg_dsn, "psycopg"))
    try:
        with Session(engine) as session, session.begin():
            job_id = enqueue_sqlalchemy(session, "h", {"k": "v"}, schema=app.schema, dedup_key="s")
            assert enqueue_sqlalchemy(session, "h", schema=app.schema, dedup_key="s") == job_id
            with pytest.raises(DataTooLarge):  # measured as App.enqueue measures it, before sending
                enqueue_sqlalchemy(session, "h", "x" * 20, schema=app.schema, max_data_bytes=10)
    finally:
        engine.dispose()
    assert (await app.get_job(job_id)).data == {"k": "v"}
