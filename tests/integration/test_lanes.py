"""Lanes: connections kept between statements, within a budget, given back on failure and on close,
replaced when the server dropped them; the enqueue calls' lane, bounded by command_timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from aiojobs_pg import App, JobStatus
from aiojobs_pg.lane import Lanes, _usable
from tests.helpers import eventually


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=3)
    try:
        yield p
    finally:
        p.terminate()  # a failed test may leave a lane holding a connection: do not wait for it


async def backend(conn: Any) -> int:
    return int(await conn.fetchval("SELECT pg_backend_pid()"))


async def _running(pool: asyncpg.Pool, pid: int, text: str) -> bool:
    """Whether backend ``pid`` is running a statement containing ``text`` (seen from another connection)."""
    query = "SELECT query FROM pg_stat_activity WHERE pid = $1 AND state = 'active'"
    return text in (await pool.fetchval(query, pid) or "")


async def test_a_lane_keeps_its_connection_between_statements(pool: asyncpg.Pool) -> None:
    lane = Lanes(pool, reserve=2).lane()
    first = await lane.run(backend)
    assert [await lane.run(backend) for _ in range(5)] == [first] * 5
    # The pool's other two connections stay free for everyone else.
    async with pool.acquire() as a, pool.acquire() as b:
        assert first not in {await backend(a), await backend(b)}
    await lane.close()
    assert pool.get_idle_size() == pool.get_size()


async def test_lanes_never_keep_more_than_the_pool_size_minus_the_reserve(pool: asyncpg.Pool) -> None:
    lanes = Lanes(pool, reserve=2)
    one, two = lanes.lane(), lanes.lane()
    await one.run(backend)
    await two.run(backend)
    assert lanes.kept == 1
    # The lane over budget acquired and released per call: two connections are still free.
    async with pool.acquire(), pool.acquire():
        pass
    await lanes.close()
    assert lanes.kept == 0
    assert pool.get_idle_size() == pool.get_size()


async def test_a_failed_statement_gives_the_connection_back(pool: asyncpg.Pool) -> None:
    lanes = Lanes(pool, reserve=2)
    lane = lanes.lane()

    async def fail_in_transaction(conn: Any) -> None:
        await conn.execute("BEGIN")
        await conn.execute("SELECT 1/0")

    with pytest.raises(asyncpg.DivisionByZeroError):
        await lane.run(fail_in_transaction)
    assert lanes.kept == 0
    # The pool rolled the broken transaction back before anyone got the connection again.
    assert await lane.run(lambda conn: conn.fetchval("SELECT 1")) == 1

    async def in_transaction(conn: Any) -> bool:
        return bool(conn.is_in_transaction())

    assert await lane.run(in_transaction) is False
    await lanes.close()


async def test_a_cancelled_statement_gives_the_connection_back(pool: asyncpg.Pool) -> None:
    lanes = Lanes(pool, reserve=2)
    lane = lanes.lane()
    pid = await lane.run(backend)
    task = asyncio.create_task(lane.run(lambda conn: conn.execute("SELECT pg_sleep(10)")))
    await eventually(lambda: _running(pool, pid, "pg_sleep(10)"), message="the statement never started")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert lanes.kept == 0 and not lane.busy
    assert await lane.run(lambda conn: conn.fetchval("SELECT 2")) == 2
    await lanes.close()
    await eventually(lambda: pool.get_idle_size() == pool.get_size(), timeout=5)


async def test_a_lane_refuses_a_second_concurrent_statement(pool: asyncpg.Pool) -> None:
    lane = Lanes(pool).lane()
    first = asyncio.create_task(lane.run(lambda conn: conn.execute("SELECT pg_sleep(0.2)")))
    await eventually(lambda: lane.busy, message="the first statement never took the lane")
    with pytest.raises(RuntimeError, match="one statement at a time"):
        await lane.run(backend)
    await first
    await lane.close()


async def test_concurrent_enqueues_share_the_pool_when_the_lane_is_busy(app: App) -> None:
    app.register("h", lambda data: None)
    jobs = await asyncio.gather(*(app.enqueue("h", {"i": i}) for i in range(50)))
    assert sorted(j.data["i"] for j in jobs) == list(range(50))
    assert len({j.id for j in jobs}) == 50


async def test_closing_the_app_gives_back_every_kept_connection(pg_dsn: str, own_schema: str) -> None:
    app = App(pg_dsn, schema=own_schema, pool_max_size=4, drain_timeout=1, poll_interval=0.1)
    app.register("h", lambda data: None)
    async with app:
        enqueue_pid = (await app.enqueue("h"), await app._enqueue_on(None, backend))[1]
        assert app._lanes is not None and app._lanes.kept == 1  # the enqueue calls' lane
        async with app.worker(concurrency=2) as worker:
            await eventually(lambda: worker.is_idle() and worker.producer.claims > 0)
            # Claim loop and completer want two; four minus a reserve of two, minus the enqueue lane, allows one.
            assert app._lanes.kept == 2
        # The stopped worker gave its lane back and is forgotten; the enqueue lane keeps its connection.
        assert app._lanes.kept == 1 and app._lanes._lanes == [app._enqueue_lane]
        assert await app._enqueue_on(None, backend) == enqueue_pid
        lanes, pool = app._lanes, app.pool
    assert lanes.kept == 0 and pool.is_closing()


async def test_an_enqueue_blocked_past_command_timeout_times_out_and_is_cancelled(
        pg_dsn: str, own_schema: str) -> None:
    app = App(pg_dsn, schema=own_schema, command_timeout=0.5)
    app.register("h", lambda data: None)
    async with app:
        first = await app.enqueue("h", {"n": 1})
        lane_pid = await app._enqueue_on(None, backend)
        locker = await asyncpg.connect(pg_dsn)
        try:
            async with locker.transaction():
                await locker.execute(f"LOCK TABLE {own_schema}.jobs IN ACCESS EXCLUSIVE MODE")
                started = time.monotonic()
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(app.enqueue("h", {"n": 2}), 10)  # 10 s: the test's own bound
                assert 0.45 <= time.monotonic() - started < 3
                # Two at once: one on the lane, the other on the pool (asyncpg's own timeout there).
                outcomes = await asyncio.wait_for(asyncio.gather(
                    app.enqueue("h", {"n": 2}), app.enqueue_many([{"handler": "h"}]), return_exceptions=True), 10)
                assert [type(o) for o in outcomes] == [TimeoutError, TimeoutError]
        finally:
            await locker.close()
        # The cancelled insert never happened; the lane gave its connection back and takes another.
        third = await app.enqueue("h", {"n": 3})
        assert [j.id for j in await app.list_jobs()] == [third.id, first.id]
        assert isinstance(lane_pid, int)


async def test_the_enqueue_lane_replaces_a_connection_the_server_dropped(app: App) -> None:
    # No enqueue fails for it: the lane sees the pool took the dead connection back, and takes another.
    app.register("h", lambda data: None)
    await app.enqueue("h")
    lane_pid = await app._enqueue_on(None, backend)
    async with app.pool.acquire() as conn:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", lane_pid)
    await eventually(lambda: _backend_gone(app, lane_pid))
    # The client reads the server's goodbye, and the pool takes the connection back from the lane.
    assert app._enqueue_lane is not None
    await eventually(lambda: not _usable(app._enqueue_lane._conn), timeout=5)
    job = await app.enqueue("h", {"after": "restart"})
    assert (await app.get_job(job.id)).data == {"after": "restart"}
    assert await app._enqueue_on(None, backend) != lane_pid


async def _backend_gone(app: App, pid: int) -> bool:
    return not await app.pool.fetchval("SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = $1", pid)


async def test_workers_on_a_small_pool_still_renew_leases_and_finish(pg_dsn: str, own_schema: str) -> None:
    # Three workers want six kept connections; a pool of three keeps one and leaves two for renewals.
    app = App(pg_dsn, schema=own_schema, pool_max_size=3, lease=1.5, poll_interval=0.1, drain_timeout=5)
    done: list[int] = []

    async def slow(data: dict[str, int]) -> None:
        await asyncio.sleep(2)  # longer than the lease: only renewals keep it
        done.append(data["i"])

    app.register("slow", slow)
    async with app:
        await app.enqueue_many([{"handler": "slow", "data": {"i": i}} for i in range(6)])
        async with app.worker(concurrency=2), app.worker(concurrency=2), app.worker(concurrency=2):
            await eventually(lambda: len(done) == 6, timeout=20)
        assert sorted(done) == list(range(6))  # each ran once: no lease ran out
        assert [(j.status, j.attempts) for j in await app.list_jobs()] == [(JobStatus.COMPLETED, 1)] * 6


async def test_session_state_left_on_the_pool_is_reset_before_the_engine_reuses_it(app: App) -> None:
    # The user-facing pool behaves as asyncpg documents: a released connection is reset.
    async with app.pool.acquire() as conn:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        await conn.execute("SET statement_timeout = 1; SET search_path = nowhere")
        await conn.execute("LISTEN user_channel")
        assert await conn.fetchval("SELECT pg_try_advisory_lock(42)")
    held = [await app.pool.acquire() for _ in range(app.pool_max_size)]
    try:
        again = next(c for c in held if c.get_server_pid() == pid)
        assert await again.fetchval("SHOW statement_timeout") == "0"
        assert await again.fetchval("SHOW search_path") == '"$user", public'
        assert await again.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
        assert await again.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", pid) == 0
    finally:
        for conn in held:
            await app.pool.release(conn)


async def _plan_cache_mode(conn: Any) -> str:
    return str(await conn.fetchval("SHOW plan_cache_mode"))


async def test_a_lane_sets_up_the_connection_it_keeps_and_the_pool_resets_it(pool: asyncpg.Pool) -> None:
    lane = Lanes(pool, reserve=2).lane(setup="SET plan_cache_mode = force_generic_plan")
    kept = await lane.run(backend)
    assert await lane.run(_plan_cache_mode) == "force_generic_plan"
    await lane.close()
    # Back in the pool, the connection is everyone's again: the reset on release undid the lane's settings.
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        again = next(c for c in held if c.get_server_pid() == kept)
        assert await _plan_cache_mode(again) == "auto"
    finally:
        for conn in held:
            await pool.release(conn)


async def test_a_lane_over_its_budget_sets_up_nothing(pool: asyncpg.Pool) -> None:
    # It acquires and releases per call: a setup would be a round trip per statement, undone at once.
    lane = Lanes(pool, reserve=pool.get_max_size()).lane(setup="SET plan_cache_mode = force_generic_plan")
    assert await lane.run(_plan_cache_mode) == "auto"
    await lane.close()


@pytest.mark.parametrize("pgbouncer", [False, True])
async def test_the_worker_claims_and_completes_on_lanes_that_plan_once(pg_dsn: str, own_schema: str,
                                                                      pgbouncer: bool) -> None:
    # Not through PgBouncer in transaction mode: a session setting there would reach other clients' statements.
    app = App(pg_dsn, schema=own_schema, pgbouncer=pgbouncer, listen_dsn=pg_dsn)
    async with app:
        worker = app.create_worker()
        modes = [await worker.producer.lane.run(_plan_cache_mode), await worker.completer.lane.run(_plan_cache_mode)]
        await worker.producer.lane.close()
        await worker.completer.lane.close()
    assert modes == (["auto"] * 2 if pgbouncer else ["force_generic_plan"] * 2)
