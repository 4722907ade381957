"""An outage surfaces as DatabaseUnavailable, then heals (issue 20, point 8).

The app's backends are terminated (``pg_terminate_backend``, as in a failover) while the
test's event loop is blocked, so the app's connections have read nothing of it when the
next call starts: that call gets a connection that looks open and is dead. With a few loop
turns in between, the server's goodbye has been read but the connection not yet closed,
and asyncpg refuses the statement with ``InternalClientError: cannot switch to state 12``.
Reads then succeed on a fresh connection; an enqueue succeeds, or raises
:class:`DatabaseUnavailable` saying whether the insert may have run.

The retry policy itself is checked on fake connections, which fail in each way on demand, in
``tests/unit/test_outage_policy.py``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import asyncpg
import pytest

from aiojobs_pg import App, DatabaseUnavailable

#: loop turns between the termination and the call: 0, the goodbye unread; 1-3, read but the connection
#: not yet closed (the "cannot switch to state" window); 20, closed, and taken back by the pool.
SPINS = [0, 1, 2, 3, 20]


async def backend(conn: Any) -> int:
    return int(await conn.fetchval("SELECT pg_backend_pid()"))


async def app_backends(app: App) -> set[int]:
    """What every connection of the app reports as its backend: the enqueue lane's, then the pool's others."""
    pids = {await app._enqueue_on(None, backend)}
    pool = app.pool
    # Every holder that is not in use (a connection that exists, or a fresh one): all but the lane's.
    free = pool.get_max_size() - (pool.get_size() - pool.get_idle_size())
    conns = [await pool.acquire() for _ in range(free)]
    try:
        pids |= {await backend(conn) for conn in conns}
    finally:
        for conn in conns:
            await pool.release(conn)
    return pids


def terminate_with_the_loop_blocked(dsn: str, pids: set[int]) -> None:
    """Terminate these backends and wait until the server has ended them, blocking the caller's event loop."""

    async def terminate() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS t(pid)", list(pids))
            for _ in range(250):
                if not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])",
                                           list(pids)):
                    return
                await asyncio.sleep(0.02)
            raise AssertionError(f"backends {sorted(pids)} still there 5 s after pg_terminate_backend")
        finally:
            await conn.close()

    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(terminate())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()  # on purpose: the app's connections must not read the server's goodbye meanwhile
    if errors:
        raise errors[0]


async def outage(app: App, pg_dsn: str, spins: int) -> set[int]:
    """Terminate every backend of the app, then let ``spins`` loop turns pass; returns the pids."""
    pids = await app_backends(app)
    assert len(pids) >= 2
    terminate_with_the_loop_blocked(pg_dsn, pids)
    for _ in range(spins):
        await asyncio.sleep(0)
    return pids


def check_documented(exc: DatabaseUnavailable) -> None:
    """The project's error, naming the driver's error it was raised from."""
    assert isinstance(exc, ConnectionError)
    cause = exc.__cause__
    assert cause is not None and type(cause).__name__ in str(exc), str(exc)
    assert type(cause).__module__.startswith("asyncpg") or isinstance(cause, OSError), repr(cause)


@pytest.mark.parametrize("spins", SPINS)
async def test_reads_right_after_the_apps_backends_are_terminated_succeed(app: App, pg_dsn: str, spins: int) -> None:
    app.register("h", lambda data: None)
    job = await app.enqueue("h", {"n": 1})
    await asyncio.gather(*(app.get_job(job.id) for _ in range(4)))  # several pool connections
    killed = await outage(app, pg_dsn, spins)
    assert (await app.get_job(job.id)).id == job.id
    assert [j.id for j in await app.list_jobs()] == [job.id]
    # No connection that was terminated serves again.
    assert not (await app_backends(app)) & killed


@pytest.mark.parametrize("spins", SPINS)
async def test_an_enqueue_right_after_the_apps_backends_are_terminated(app: App, pg_dsn: str, spins: int) -> None:
    app.register("h", lambda data: None)
    first = await app.enqueue("h", {"n": 1})
    killed = await outage(app, pg_dsn, spins)
    try:
        second = await app.enqueue("h", {"n": 2})
    except DatabaseUnavailable as exc:
        check_documented(exc)
        expected = {1} if not exc.may_have_run else None  # a write sent and unanswered: it may exist
    else:
        expected = {1, 2}
        assert (await app.get_job(second.id)).data == {"n": 2}
    found = {j.data["n"] for j in await app.list_jobs()}
    assert found == expected if expected is not None else found in ({1}, {1, 2})
    # Healed: the next calls succeed, on connections that are not the terminated ones.
    third = await app.enqueue("h", {"n": 3})
    assert (await app.get_job(third.id)).id == third.id
    assert first.id in {j.id for j in await app.list_jobs()}
    assert not (await app_backends(app)) & killed


async def test_a_statement_on_the_callers_terminated_connection_raises_the_documented_error(
        app: App, pg_dsn: str) -> None:
    app.register("h", lambda data: None)
    async with app.pool.acquire() as conn:
        terminate_with_the_loop_blocked(pg_dsn, {await backend(conn)})
        with pytest.raises(DatabaseUnavailable) as raised:
            await app.enqueue("h", connection=conn)
    check_documented(raised.value)
    assert raised.value.operation == "insert_plain"
    assert await app.list_jobs() == []
    async with app.pool.acquire() as conn:
        # The caller's own transaction block then fails to end, as asyncpg has it, on the closed connection.
        with pytest.raises(asyncpg.InterfaceError, match="connection is closed"):
            async with conn.transaction():
                terminate_with_the_loop_blocked(pg_dsn, {await backend(conn)})
                with pytest.raises(DatabaseUnavailable) as raised:
                    await app.enqueue("h", connection=conn)
    # Inside the caller's transaction, which the lost connection rolled back: nothing was written.
    assert raised.value.may_have_run is False and "rolled back" in str(raised.value)
    assert await app.list_jobs() == []
