"""Integration tests of enqueue / enqueue_many against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import asyncpg
import pytest

from aiojobs_pg import App, Job, JobBatch, JobStatus, UnknownHandler, ValidationError
from aiojobs_pg.queries import init_connection
from aiojobs_pg.testing import refute_enqueued

TOLERANCE = timedelta(seconds=2)
SENTINEL = "__test_sentinel__"


# --- helpers ---

async def count_jobs(app: App, where: str = "true", *args: Any) -> int:
    value: int = await app.pool.fetchval(f"SELECT count(*) FROM {app.schema}.jobs WHERE {where}", *args)
    return value


async def db_now(app: App) -> datetime:
    value: datetime = await app.pool.fetchval("SELECT now()")
    return value


def assert_close(actual: datetime, expected: datetime, tolerance: timedelta = TOLERANCE) -> None:
    assert abs(actual - expected) <= tolerance, f"{actual} is not within {tolerance} of {expected}"


@pytest.fixture
async def conn(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own, set up like the app's pool connections."""
    connection = await asyncpg.connect(pg_dsn)
    await init_connection(connection)
    try:
        yield connection
    finally:
        await connection.close()


class Listener:
    """LISTENs on the app's channel; ``drain`` returns what arrived before a sentinel NOTIFY.

    PostgreSQL delivers notifications of different transactions in commit order, so
    once the sentinel (sent after the code under test committed) has arrived, every
    notification the code under test caused has arrived too.
    """

    def __init__(self, app: App, conn: asyncpg.Connection) -> None:
        self.app = app
        self.conn = conn
        self.received: asyncio.Queue[str] = asyncio.Queue()

    def _on_notify(self, connection: Any, pid: int, channel: str, payload: object) -> None:
        assert channel == self.app.queries.channel
        assert isinstance(payload, str)
        self.received.put_nowait(payload)

    async def start(self) -> None:
        await self.conn.add_listener(self.app.queries.channel, self._on_notify)

    async def drain(self) -> list[str]:
        await self.app.pool.execute("SELECT pg_notify($1, $2)", self.app.queries.channel, SENTINEL)
        payloads: list[str] = []
        with anyio.fail_after(5):
            while (payload := await self.received.get()) != SENTINEL:
                payloads.append(payload)
        return payloads


@pytest.fixture
async def listener(app: App, pg_dsn: str) -> AsyncIterator[Listener]:
    connection = await asyncpg.connect(pg_dsn)
    result = Listener(app, connection)
    await result.start()
    try:
        yield result
    finally:
        await connection.close()


# --- basics ---

async def test_enqueue_returns_job_with_fields_and_defaults(app: App) -> None:
    before = await db_now(app)
    job = await app.enqueue("send_email", {"to": "a@example.com", "n": [1, 2]})
    assert isinstance(job, Job)
    assert job.id >= 1
    assert job.handler == "send_email"
    assert job.data == {"to": "a@example.com", "n": [1, 2]}
    assert job.queue == "default"
    assert job.priority == 0
    assert job.max_attempts == 3
    assert job.status is JobStatus.PENDING
    assert job.attempts == 0
    assert job.name is None and job.schedule is None and job.timezone is None
    assert job.timeout is None and job.dedup_key is None and job.result is None
    assert job.worker_id is None and job.lease_expires_at is None
    assert job.next_run_at >= before
    assert_close(job.next_run_at, await db_now(app))
    assert await app.get_job(job.id) == job
    assert await count_jobs(app) == 1


async def test_plain_enqueue_stores_its_queue_priority_and_attempts(app: App, listener: Listener) -> None:
    # A plain job goes through insert_plain (five columns): what it does not send must be the defaults.
    job = await app.enqueue("h", {"x": 1}, queue="q2", priority=7, max_attempts=4)
    assert await app.get_job(job.id) == job
    assert (job.queue, job.priority, job.max_attempts, job.data, job.next_run_at) == (
        "q2", 7, 4, {"x": 1}, job.created_at)
    assert await listener.drain() == ["q2"]


async def test_enqueue_stores_every_given_field(app: App) -> None:
    job = await app.enqueue("h", [1, "two"], name="nightly", queue="reports", priority=-5, max_attempts=7,
                            timeout="90s", dedup_key="k1")
    stored = await app.get_job(job.id)
    assert stored == job
    assert (stored.name, stored.queue, stored.priority, stored.max_attempts, stored.timeout, stored.dedup_key) == (
        "nightly", "reports", -5, 7, 90.0, "k1")
    assert stored.data == [1, "two"]


async def test_enqueue_none_data_is_json_null(app: App) -> None:
    job = await app.enqueue("h")
    assert job.data is None
    assert await app.pool.fetchval(f"SELECT jsonb_typeof(data) FROM {app.schema}.jobs WHERE id = $1",
                                   job.id) == "null"


async def test_default_max_attempts_setting(pg_dsn: str, own_schema: str) -> None:
    other = App(pg_dsn, schema=own_schema, default_max_attempts=5)
    async with other:
        assert (await other.enqueue("h")).max_attempts == 5
        assert (await other.enqueue("h", max_attempts=2)).max_attempts == 2
        jobs = await other.enqueue_many([{"handler": "h"}, {"handler": "h", "max_attempts": 9}])
        assert [j.max_attempts for j in jobs] == [5, 9]


# --- when ---

@pytest.mark.parametrize(
    ("delay", "seconds"),
    [(30, 30), (2.5, 2.5), ("10m", 600), ("45", 45), (timedelta(hours=2), 7200)],
)
async def test_delay_is_relative_to_db_now(app: App, delay: Any, seconds: float) -> None:
    job = await app.enqueue("h", delay=delay)
    assert_close(job.next_run_at, await db_now(app) + timedelta(seconds=seconds))
    jobs = await app.enqueue_many([{"handler": "h", "delay": delay}])
    assert_close(jobs[0].next_run_at, await db_now(app) + timedelta(seconds=seconds))


async def test_run_at_is_stored_exactly(app: App) -> None:
    run_at = datetime(2031, 7, 4, 18, 30, 15, 123456, tzinfo=timezone(timedelta(hours=-4)))
    job = await app.enqueue("h", run_at=run_at)
    assert job.next_run_at == run_at
    assert (await app.get_job(job.id)).next_run_at == run_at
    past = datetime(2001, 1, 1, tzinfo=UTC)
    assert (await app.enqueue("h", run_at=past)).next_run_at == past
    many = await app.enqueue_many([{"handler": "h", "run_at": run_at}, {"handler": "h"}])
    assert many[0].next_run_at == run_at


async def test_naive_run_at_and_both_delay_and_run_at_are_rejected(app: App) -> None:
    with pytest.raises(ValidationError) as info:
        await app.enqueue("h", run_at=datetime(2031, 1, 1))
    assert info.value.field == "run_at"
    with pytest.raises(ValidationError) as info:
        await app.enqueue("h", delay=5, run_at=datetime(2031, 1, 1, tzinfo=UTC))
    assert info.value.field == "delay"
    assert await count_jobs(app) == 0


async def test_interval_schedule_first_tick_is_next_boundary(app: App) -> None:
    now = await db_now(app)
    job = await app.enqueue("tick", schedule="5m")
    assert job.schedule == "5m"
    assert job.timezone == "UTC"
    assert job.next_run_at.timestamp() % 300 == 0
    assert now < job.next_run_at <= now + timedelta(minutes=5) + TOLERANCE


async def test_cron_schedule_with_timezone(app: App) -> None:
    job = await app.enqueue("report", schedule="30 9 * * 1-5", timezone="Europe/Paris")
    stored = await app.get_job(job.id)
    assert (stored.schedule, stored.timezone) == ("30 9 * * 1-5", "Europe/Paris")
    local = stored.next_run_at.astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute, local.second) == (9, 30, 0)
    assert local.isoweekday() <= 5
    now = await db_now(app)
    assert now < stored.next_run_at <= now + timedelta(days=4)


async def test_schedule_with_delay_runs_after_delay(app: App) -> None:
    job = await app.enqueue("tick", schedule="1h", delay=10)
    assert job.schedule == "1h"
    assert_close(job.next_run_at, await db_now(app) + timedelta(seconds=10))


# --- transactions ---

async def test_enqueue_in_transaction_visible_only_after_commit(app: App, conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        job = await app.enqueue("h", {"x": 1}, connection=conn)
        assert await conn.fetchval(f"SELECT count(*) FROM {app.schema}.jobs") == 1
        assert await count_jobs(app) == 0
    assert await count_jobs(app) == 1
    assert (await app.get_job(job.id)).data == {"x": 1}


async def test_enqueue_in_rolled_back_transaction_leaves_nothing(app: App, conn: asyncpg.Connection) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with conn.transaction():
            await app.enqueue("h", connection=conn)
            raise Boom
    await refute_enqueued(app)  # no pending job at all (the failure would list any)


async def test_enqueue_many_in_transaction(app: App, conn: asyncpg.Connection) -> None:
    items = [{"handler": "h", "data": i} for i in range(5)]
    async with conn.transaction():
        jobs = await app.enqueue_many(items, connection=conn)
        assert len(jobs) == 5
        assert await count_jobs(app) == 0
    assert await count_jobs(app) == 5
    tx = conn.transaction()
    await tx.start()
    await app.enqueue_many(items, connection=conn)
    await tx.rollback()
    assert await count_jobs(app) == 5


# --- notifications ---

async def test_enqueue_many_notifies_once_per_queue(app: App, listener: Listener) -> None:
    await app.enqueue_many([{"handler": "h", "data": {"secret": f"s{i}"}} for i in range(50)])
    assert await listener.drain() == ["default"]
    items = [{"handler": "h", "queue": q, "data": {"secret": "s"}} for q in ("a", "b", "c") for _ in range(10)]
    await app.enqueue_many(items)
    payloads = await listener.drain()
    assert sorted(payloads) == ["a", "b", "c"]


async def test_enqueue_notifies_with_queue_name_only(app: App, listener: Listener) -> None:
    await app.enqueue("h", {"password": "hunter2"}, queue="mail")
    payloads = await listener.drain()
    assert payloads == ["mail"]
    assert "hunter2" not in payloads[0]


async def test_delayed_jobs_do_not_notify(app: App, listener: Listener) -> None:
    await app.enqueue("h", delay=30)
    await app.enqueue("h", delay="1m", queue="other")
    await app.enqueue("h", schedule="1h")
    await app.enqueue("h", run_at=datetime.now(UTC) + timedelta(hours=1))
    await app.enqueue_many([{"handler": "h", "delay": 5}, {"handler": "h", "queue": "q2", "delay": 1}])
    assert await listener.drain() == []
    assert await count_jobs(app) == 6


async def test_mixed_batch_notifies_only_due_queues(app: App, listener: Listener) -> None:
    await app.enqueue_many([
        {"handler": "h", "queue": "late", "delay": 60},
        {"handler": "h", "queue": "now"},
        {"handler": "h", "queue": "past", "run_at": datetime(2000, 1, 1, tzinfo=UTC)},
    ])
    assert sorted(await listener.drain()) == ["now", "past"]


async def test_rolled_back_enqueue_does_not_notify(app: App, listener: Listener,
                                                   conn: asyncpg.Connection) -> None:
    tx = conn.transaction()
    await tx.start()
    await app.enqueue("h", connection=conn)
    await app.enqueue_many([{"handler": "h", "queue": "q2"}], connection=conn)
    await tx.rollback()
    assert await listener.drain() == []
    async with conn.transaction():
        await app.enqueue("h", connection=conn)
        # Not delivered before commit. A negative: nothing arrives within 0.3 s (no event to wait for).
        await asyncio.sleep(0.3)
        assert listener.received.empty()
    assert await listener.drain() == ["default"]


# --- dedup ---

async def test_dedup_returns_live_job(app: App) -> None:
    first = await app.enqueue("h", {"v": 1}, dedup_key="user:1")
    second = await app.enqueue("h", {"v": 2}, dedup_key="user:1")
    assert second.id == first.id
    assert second.data == {"v": 1}
    assert await count_jobs(app) == 1
    other = await app.enqueue("h", dedup_key="user:2")
    assert other.id != first.id
    # A running job still holds the key.
    await app.pool.execute(f"UPDATE {app.schema}.jobs SET status = 'running' WHERE id = $1", first.id)
    assert (await app.enqueue("h", dedup_key="user:1")).id == first.id
    assert await count_jobs(app) == 2


@pytest.mark.parametrize("final", ["completed", "failed", "cancelled"])
async def test_dedup_key_is_free_once_the_job_finished(app: App, final: str) -> None:
    first = await app.enqueue("h", dedup_key="k")
    await app.pool.execute(f"UPDATE {app.schema}.jobs SET status = $2 WHERE id = $1", first.id, final)
    second = await app.enqueue("h", dedup_key="k")
    assert second.id != first.id
    assert second.status is JobStatus.PENDING
    assert await count_jobs(app, "dedup_key = 'k'") == 2
    many = await app.enqueue_many([{"handler": "h", "dedup_key": "k"}])
    assert many[0].id == second.id


async def test_concurrent_dedup_creates_one_row(app: App) -> None:
    jobs = await asyncio.gather(*(app.enqueue("h", {"i": i}, dedup_key="race") for i in range(20)))
    assert len({j.id for j in jobs}) == 1
    assert await count_jobs(app) == 1


async def test_enqueue_many_dedup_within_batch(app: App) -> None:
    jobs = await app.enqueue_many([
        {"handler": "h", "data": "a", "dedup_key": "same"},
        {"handler": "h", "data": "plain"},
        {"handler": "h", "data": "b", "dedup_key": "same"},
        {"handler": "h", "data": "c", "dedup_key": "other"},
    ])
    assert jobs[0].id == jobs[2].id
    assert jobs[0].data == jobs[2].data == "a"
    assert jobs[1].data == "plain" and jobs[1].dedup_key is None
    assert jobs[3].data == "c"
    assert len({j.id for j in jobs}) == 3
    assert await count_jobs(app) == 3
    again = await app.enqueue_many([{"handler": "h", "dedup_key": "same"}, {"handler": "h", "dedup_key": "other"}])
    assert [j.id for j in again] == [jobs[0].id, jobs[3].id]
    assert await count_jobs(app) == 3


# --- enqueue_many ---

async def test_enqueue_many_thousand_in_input_order(app: App) -> None:
    items = [
        {"handler": f"h{i % 3}", "data": {"i": i}, "queue": f"q{i % 4}", "priority": (i * 7) % 11 - 5}
        for i in range(1000)
    ]
    jobs = await app.enqueue_many(items)
    assert len(jobs) == 1000
    assert [j.data for j in jobs] == [{"i": i} for i in range(1000)]
    assert [(j.handler, j.queue, j.priority) for j in jobs] == [
        (it["handler"], it["queue"], it["priority"]) for it in items]
    assert len({j.id for j in jobs}) == 1000
    assert await count_jobs(app) == 1000
    stored = await app.pool.fetch(f"SELECT id, data, queue, priority FROM {app.schema}.jobs")
    by_id = {r["id"]: r for r in stored}
    for job in jobs:
        assert (by_id[job.id]["data"], by_id[job.id]["queue"], by_id[job.id]["priority"]) == (
            job.data, job.queue, job.priority)


async def test_enqueue_many_empty(app: App) -> None:
    assert await app.enqueue_many([]) == []


async def test_enqueue_many_one_invalid_item_writes_nothing(app: App) -> None:
    items: list[dict[str, Any]] = [{"handler": "h", "data": i} for i in range(10)]
    items[7]["max_attempts"] = 0
    with pytest.raises(ValidationError) as info:
        await app.enqueue_many(items)
    assert "jobs[7]" in info.value.field
    assert info.value.field == "jobs[7].max_attempts"
    items[7] = {"data": 1}
    with pytest.raises(ValidationError) as info:
        await app.enqueue_many(items)
    assert info.value.field == "jobs[7]"
    assert await count_jobs(app) == 0


# --- validation ---

async def test_unknown_handler_rejected_when_handlers_registered(app: App) -> None:
    async def known(data: Any) -> None:
        return None

    assert (await app.enqueue("anything_goes")).handler == "anything_goes"
    app.register("known", known)
    with pytest.raises(UnknownHandler) as info:
        await app.enqueue("unknown")
    assert info.value.field == "handler"
    with pytest.raises(ValidationError) as info2:
        await app.enqueue_many([{"handler": "known"}, {"handler": "unknown"}])
    assert info2.value.field == "jobs[1].handler"
    assert await count_jobs(app) == 1
    assert (await app.enqueue("known")).handler == "known"


class _Unserialisable:
    pass


BAD_ENQUEUE: list[tuple[dict[str, Any], str]] = [
    ({"data": {1, 2}}, "data"),
    ({"data": _Unserialisable()}, "data"),
    ({"data": float("nan")}, "data"),
    ({"data": {"s": "a\x00b"}}, "data"),
    ({"data": "\ud800"}, "data"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"max_attempts": -1}, "max_attempts"),
    ({"max_attempts": True}, "max_attempts"),
    ({"max_attempts": "3"}, "max_attempts"),
    ({"delay": -1}, "delay"),
    ({"delay": "5x"}, "delay"),
    ({"queue": ""}, "queue"),
    ({"queue": "q" * 101}, "queue"),
    ({"queue": "a\x00"}, "queue"),
    ({"queue": 3}, "queue"),
    ({"priority": 2**31}, "priority"),
    ({"priority": -(2**31) - 1}, "priority"),
    ({"schedule": "every 5 minutes"}, "schedule"),
    ({"schedule": "0 0 31 2 *"}, "schedule"),
    ({"timezone": "Europe/Paris"}, "timezone"),
    ({"schedule": "5m", "timezone": "Mars/Olympus"}, "timezone"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": -3}, "timeout"),
    ({"name": "n\x00"}, "name"),
    ({"dedup_key": "\ud800"}, "dedup_key"),
]


@pytest.mark.parametrize(("kwargs", "field"), BAD_ENQUEUE, ids=[repr(k)[:50] for k, _ in BAD_ENQUEUE])
async def test_invalid_enqueue_raises_and_writes_nothing(app: App, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        await app.enqueue("h", **kwargs)
    assert info.value.field == field
    with pytest.raises(ValidationError) as info:
        await app.enqueue_many([{"handler": "h"}, {"handler": "h", **kwargs}])
    assert info.value.field == f"jobs[1].{field}"
    assert await count_jobs(app) == 0


async def test_huge_but_valid_data_round_trips(app: App) -> None:
    big = "x" * 1_000_000
    nested: Any = {"leaf": [1, 2.5, "é", None, True]}
    for depth in range(100):
        nested = {"d": depth, "n": [nested]}
    job = await app.enqueue("h", {"big": big, "nested": nested})
    stored = await app.get_job(job.id)
    assert stored.data["big"] == big
    assert stored.data["nested"] == nested
    assert stored.data == job.data


# --- regressions: bugs found while writing these tests ---

@pytest.mark.parametrize("delay", [timedelta(days=3_000_000), "99999999d", 1e13])
async def test_huge_delay_is_rejected_and_writes_nothing(app: App, delay: Any) -> None:
    # Today the 8,200-year delays insert a row, then raise OverflowError decoding it.
    with pytest.raises(ValidationError) as info:
        await app.enqueue("h", delay=delay)
    assert info.value.field == "delay"
    assert await count_jobs(app) == 0


async def test_enqueue_many_item_max_attempts_none_means_default(app: App) -> None:
    jobs = await app.enqueue_many([{"handler": "h", "max_attempts": None}])
    assert jobs[0].max_attempts == app.default_max_attempts


async def test_enqueue_many_returns_the_jobs_as_stored(app: App) -> None:
    items = [
        {"handler": "h", "data": {"b": [1, 2.5, None], "a": "x"}, "queue": "q1", "priority": 3, "name": "one"},
        {"handler": "h", "data": None, "delay": 60, "max_attempts": 7, "timeout": "5s"},
        {"handler": "h", "data": [1, {"k": True}], "schedule": "5m", "timezone": "Europe/Paris"},
        {"handler": "h", "data": "keyed", "dedup_key": "k-1"},
    ]
    returned = await app.enqueue_many(items)
    assert returned == [await app.get_job(j.id) for j in returned]


async def test_enqueue_many_values_every_job_shares_reach_every_row(app: App) -> None:
    # A column with the same value for every job is sent once; each row must still get it.
    run_at = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    shared = {"handler": "h", "queue": "q9", "priority": -4, "name": "same", "max_attempts": 9, "timeout": 12.5,
              "run_at": run_at, "schedule": "1h", "timezone": "Europe/Paris", "misfire": "all", "overlap": "skip"}
    returned = await app.enqueue_many([{**shared, "data": {"i": i}} for i in range(3)])
    assert returned == [await app.get_job(j.id) for j in returned]
    assert [(j.data, j.queue, j.priority, j.name, j.max_attempts, j.timeout, j.next_run_at, j.schedule, j.timezone,
             j.misfire, j.overlap) for j in returned] == [
        ({"i": i}, "q9", -4, "same", 9, 12.5, run_at, "1h", "Europe/Paris", "all", "skip") for i in range(3)]
    before = await db_now(app)
    delayed = await app.enqueue_many([{"handler": "h", "delay": 30}] * 2)
    assert delayed == [await app.get_job(j.id) for j in delayed]
    for job in delayed:
        assert_close(job.next_run_at, before + timedelta(seconds=30))


async def test_enqueue_many_of_one_kind_stores_what_the_same_items_store_one_by_one(
        app: App, listener: Listener) -> None:
    # Items of one handler, queue and priority take their own statement (insert_uniform).
    items = [{"handler": "h", "data": d, "queue": "q7", "priority": -3} for d in ({"i": 1}, None, [1, "x"], "s")]
    uniform = await app.enqueue_many(items)
    assert await listener.drain() == ["q7"]
    each = [await app.enqueue_many([item]) for item in items]  # a batch of one is uniform too
    mixed = await app.enqueue_many([*items, {**items[0], "name": "n"}])  # not uniform: the general statement
    assert await listener.drain() == ["q7"] * 5
    stored = [await app.get_job(job.id) for job in uniform]
    assert uniform == stored
    assert [j.id for j in uniform] == sorted(j.id for j in uniform)
    same = ("handler", "data", "queue", "priority", "max_attempts", "status", "attempts", "name", "schedule",
            "timeout", "dedup_key", "misfire", "overlap")

    def fields(job: Job) -> tuple[Any, ...]:
        return tuple(getattr(job, f) for f in same)

    assert [fields(j) for j in uniform] == [fields(b[0]) for b in each] == [fields(j) for j in mixed[:4]]
    assert all(j.next_run_at == j.created_at for j in uniform)


async def test_enqueue_many_returns_a_batch_that_reads_like_a_list(app: App) -> None:
    batch = await app.enqueue_many([{"handler": "h", "data": i} for i in range(5)])
    assert isinstance(batch, JobBatch)
    stored = [await app.get_job(job_id) for job_id in batch.ids]
    assert [job.data for job in stored] == [0, 1, 2, 3, 4]
    assert len(batch) == 5
    assert batch == stored and stored == batch and batch == tuple(stored)
    assert batch != stored[:4] and batch != "not jobs"
    assert batch[1] == stored[1] and batch[-1] == stored[-1] and batch[1:3] == stored[1:3]
    assert list(reversed(batch)) == stored[::-1] and stored[2] in batch and batch.index(stored[3]) == 3
    assert batch[0] is batch[0]  # built once
    assert repr(batch).startswith("JobBatch([Job(")
