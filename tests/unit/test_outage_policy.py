"""The outage retry policy on fake connections, which fail in each way on demand (no database).

A write the dead connection refused runs again on a fresh one; a write that may have reached the
server is never repeated; reads run again, at most three times; other errors pass through. The same
outage against a real server is in ``tests/integration/test_outage.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from aiojobs_pg import DatabaseUnavailable
from aiojobs_pg.queries import READ_STATEMENTS, ConnectionSource, GuardedDB, Queries


class FakeConn:
    """A connection whose statements raise ``error`` (then it is closed) until it is replaced."""

    def __init__(self, error: BaseException | None, closes: bool = True) -> None:
        self.error = error
        self.closes = closes
        self.closed = False
        self.terminated = False
        self.sent = 0

    def is_closed(self) -> bool:
        return self.closed

    def is_in_transaction(self) -> bool:
        return False

    def terminate(self) -> None:
        self.terminated = self.closed = True

    async def fetchrow(self, query: str, *args: Any) -> Any:
        if self.error is not None:
            self.closed = self.closes
            raise self.error
        self.sent += 1
        return {"ok": query}


class FakeSource(ConnectionSource):
    """Hands out the given connections in turn; raises ``connect_error`` instead when it is set."""

    def __init__(self, *conns: FakeConn, connect_error: BaseException | None = None) -> None:
        self.conns = list(conns)
        self.used: list[FakeConn] = []
        self.connect_error = connect_error
        self.expired = 0
        self.pool = self  # type: ignore[assignment]

    async def expire_connections(self) -> None:
        self.expired += 1

    async def use(self, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        if self.connect_error is not None:
            raise self.connect_error
        conn = self.conns.pop(0)
        self.used.append(conn)
        return await fn(conn)


REFUSED = asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")
CUT = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")


@pytest.fixture
def queries() -> Queries:
    return Queries("outage_fake")


async def test_a_write_the_dead_connection_refused_runs_on_a_fresh_one(queries: Queries) -> None:
    dead, fresh = FakeConn(REFUSED), FakeConn(None)
    source = FakeSource(dead, fresh)
    assert await GuardedDB(source, queries).fetchrow(queries.sql["insert_plain"]) == {
        "ok": queries.sql["insert_plain"]}
    assert dead.terminated and fresh.sent == 1 and source.expired == 1


async def test_a_write_sent_before_the_connection_was_lost_is_never_repeated(queries: Queries) -> None:
    cut, spare = FakeConn(CUT), FakeConn(None)
    with pytest.raises(DatabaseUnavailable) as raised:
        await GuardedDB(FakeSource(cut, spare), queries).fetchrow(queries.sql["insert_plain"])
    assert raised.value.may_have_run is True and raised.value.__cause__ is CUT
    assert "whether it took effect is unknown" in str(raised.value)
    assert cut.terminated and spare.sent == 0


async def test_a_read_cut_off_midway_runs_again(queries: Queries) -> None:
    cut, fresh = FakeConn(CUT), FakeConn(None)
    await GuardedDB(FakeSource(cut, fresh), queries).fetchrow(queries.sql["get_job"])
    assert cut.terminated and fresh.sent == 1


async def test_a_read_gives_up_after_three_lost_connections(queries: Queries) -> None:
    conns = [FakeConn(CUT) for _ in range(4)]
    with pytest.raises(DatabaseUnavailable) as raised:
        await GuardedDB(FakeSource(*conns), queries).fetchrow(queries.sql["get_job"])
    assert raised.value.may_have_run is False and raised.value.operation == "get_job"
    assert [c.terminated for c in conns] == [True, True, True, False]


async def test_a_database_that_cannot_be_reached_raises_at_once(queries: Queries) -> None:
    refused = ConnectionRefusedError(111, "Connect call failed")
    with pytest.raises(DatabaseUnavailable, match="could not connect to the database for get_job") as raised:
        await GuardedDB(FakeSource(connect_error=refused), queries).fetchrow(queries.sql["get_job"])
    assert raised.value.__cause__ is refused and raised.value.may_have_run is False


async def test_errors_that_are_no_outage_pass_through(queries: Queries) -> None:
    # A timeout leaves the connection usable; a server error is the statement's own.
    for error in (TimeoutError(), asyncpg.UniqueViolationError("duplicate key")):
        conn = FakeConn(error, closes=False)
        with pytest.raises(type(error)):
            await GuardedDB(FakeSource(conn), queries).fetchrow(queries.sql["insert_plain"])
        assert not conn.terminated


def test_the_statements_retried_as_reads_only_read(queries: Queries) -> None:
    for name in READ_STATEMENTS:
        sql = queries.sql[name].upper()
        assert sql.lstrip().startswith(("SELECT", "WITH")), name
        assert not any(word in sql for word in ("INSERT ", "UPDATE ", "DELETE ", "PG_NOTIFY", "FOR UPDATE")), name
