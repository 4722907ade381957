"""Lanes: connections kept between the statements of one sequential user.

asyncpg's ``acquire``/``release`` pair is dear next to a short statement (the
release runs in a shielded task of its own; figures in docs/performance.md). The
claim loop, the completer and an app's enqueue calls each run one statement after
another, so each keeps its pool connection in a :class:`Lane` instead. Lanes
together never keep more than the pool's size minus ``reserve`` connections, so
lease renewal, maintenance and the application's own queries always find one;
past that limit a lane acquires and releases per call like any other pool user. A
statement that fails or is cancelled gives its connection back to the pool, which
rolls back, resets or replaces it; the lane takes a fresh one next time. The
pool's ``command_timeout`` bounds every statement.

A lane is also a :class:`~aiojobs_pg.queries.ConnectionSource`: the app's enqueue
calls run each statement on it through a :class:`~aiojobs_pg.queries.GuardedDB`,
which closes a connection the server dropped and runs a statement again on a fresh
one when that cannot repeat a write (docs/reliability.md, "Outages").

A lane may set its kept connection up for its statements (``setup``: the worker's
claim and completion lanes run :data:`~aiojobs_pg.queries.HOT_PATH_SETTINGS`). The
settings last while the lane keeps the connection: the pool's reset on release
(``RESET ALL``) undoes them before anyone else acquires it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from .queries import ConnectionSource, Pool, is_open, on_pool

P = ParamSpec("P")
T = TypeVar("T")


class Lanes:
    """The connections all lanes of one pool may keep, and the lanes not closed yet."""

    def __init__(self, pool: Pool, *, reserve: int = 2) -> None:
        self.pool = pool
        self.limit = max(0, pool.get_max_size() - reserve)
        self.kept = 0
        self.closed = False
        self._lanes: list[Lane] = []

    def lane(self, *, setup: str | None = None) -> Lane:
        """A new lane on this pool; ``setup`` (SQL) runs on each connection the lane keeps, before its first
        statement there."""
        lane = Lane(self, setup=setup)
        self._lanes.append(lane)
        return lane

    async def close(self) -> None:
        """Give back every kept connection; from now on lanes acquire and release per call."""
        self.closed = True
        for lane in list(self._lanes):
            await lane.close()


class Lane(ConnectionSource):
    """One statement at a time on a connection kept from the pool between calls."""

    def __init__(self, lanes: Lanes, *, setup: str | None = None) -> None:
        super().__init__(lanes.pool)
        self._lanes = lanes
        self._setup = setup
        self._conn: Any = None
        self._closed = False
        #: a statement is running on this lane (a second caller must use the pool)
        self.busy = False

    def _take(self) -> None:
        if self.busy:
            raise RuntimeError("a lane runs one statement at a time")
        self.busy = True

    async def _give_back(self, conn: Any) -> None:
        if self._conn is conn:
            self._conn = None
            self._lanes.kept -= 1
        await self._lanes.pool.release(conn)

    async def run(self, fn: Callable[Concatenate[Any, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(connection, *args, **kwargs)`` on the lane's connection."""
        self._take()
        lanes = self._lanes
        try:
            conn = self._conn
            if conn is not None and not _usable(conn):
                # The server dropped it (a restart, pg_terminate_backend): the pool has taken it back.
                self._conn, conn = None, None
                lanes.kept -= 1
            if conn is None:
                conn = await lanes.pool.acquire()
            try:
                # Set up only a connection the lane will keep: one acquired per call is not worth a round trip.
                if self._setup is not None and conn is not self._conn and self._can_keep():
                    await conn.execute(self._setup)
                result = await fn(conn, *args, **kwargs)
            except BaseException:
                with contextlib.suppress(Exception):  # the statement's own error is the one to report
                    await self._give_back(conn)
                raise
            # fn succeeded: a connection that fails its reset on the way back was closed by the pool, and
            # must not turn a committed write into an error (its caller would make it again).
            with contextlib.suppress(Exception):
                if self._conn is conn:
                    if self._closed or lanes.closed:
                        await self._give_back(conn)
                elif self._can_keep():
                    self._conn = conn
                    lanes.kept += 1
                else:
                    await lanes.pool.release(conn)
            return result
        finally:
            self.busy = False

    def _can_keep(self) -> bool:
        return not (self._closed or self._lanes.closed) and self._lanes.kept < self._lanes.limit

    async def use(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """``await fn(connection)``: on the lane, or on a pool connection of its own while the lane is busy."""
        if self.busy:
            return await on_pool(self._lanes.pool, fn)
        return await self.run(fn)

    async def close(self) -> None:
        """Give the kept connection back and keep none from now on (one in use goes back when done)."""
        self._closed = True
        with contextlib.suppress(ValueError):
            self._lanes._lanes.remove(self)
        if self._conn is not None and not self.busy:
            await self._give_back(self._conn)


def _usable(conn: Any) -> bool:
    """Whether a kept pool connection still serves: one whose backend died was taken back by the pool."""
    return is_open(conn)
