"""Lanes: connections kept between the statements of one sequential user.

asyncpg's ``acquire``/``release`` pair costs about 0.1 ms of CPU per call on a
small machine (the release runs in a shielded task of its own). The claim loop
and the completer each run one statement after another, so each keeps its pool
connection in a :class:`Lane` instead. Lanes together never keep more than the
pool's size minus ``reserve`` connections, so lease renewal, maintenance and the
application's own queries always find one; past that limit a lane acquires and
releases per call like any other pool user. A statement that fails or is
cancelled gives its connection back to the pool, which rolls back, resets or
replaces it; the lane takes a fresh one next time.

An app's enqueue calls run on a :class:`DedicatedLane`: a connection of its own,
opened without asyncpg's ``command_timeout``, whose statements a
:class:`Deadline` bounds by the same limit with one timer per limit instead of
one per statement."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from .queries import Pool

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

    def lane(self) -> Lane:
        """A new lane on this pool."""
        lane = Lane(self)
        self._lanes.append(lane)
        return lane

    async def close(self) -> None:
        """Give back every kept connection; from now on lanes acquire and release per call."""
        self.closed = True
        for lane in list(self._lanes):
            await lane.close()


class _OneAtATime:
    """What both kinds of lane share: a connection kept between statements, run one at a time."""

    def __init__(self) -> None:
        self._conn: Any = None
        self._closed = False
        #: a statement is running on this lane (a second caller must use the pool)
        self.busy = False

    def _take(self) -> None:
        if self.busy:
            raise RuntimeError("a lane runs one statement at a time")
        self.busy = True


class Lane(_OneAtATime):
    """One statement at a time on a connection kept from the pool between calls."""

    def __init__(self, lanes: Lanes) -> None:
        super().__init__()
        self._lanes = lanes

    async def run(self, fn: Callable[Concatenate[Any, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(connection, *args, **kwargs)`` on the lane's connection."""
        self._take()
        lanes = self._lanes
        try:
            conn = self._conn
            if conn is None:
                conn = await lanes.pool.acquire()
            try:
                result = await fn(conn, *args, **kwargs)
            except BaseException:
                with contextlib.suppress(Exception):  # the statement's own error is the one to report
                    await self._give_back(conn)
                raise
            if self._conn is conn:
                if self._closed or lanes.closed:
                    await self._give_back(conn)
            elif not (self._closed or lanes.closed) and lanes.kept < lanes.limit:
                self._conn = conn
                lanes.kept += 1
            else:
                await lanes.pool.release(conn)
            return result
        finally:
            self.busy = False

    async def close(self) -> None:
        """Give the kept connection back and keep none from now on (one in use goes back when done)."""
        self._closed = True
        with contextlib.suppress(ValueError):
            self._lanes._lanes.remove(self)
        if self._conn is not None and not self.busy:
            await self._give_back(self._conn)

    async def _give_back(self, conn: Any) -> None:
        if self._conn is conn:
            self._conn = None
            self._lanes.kept -= 1
        await self._lanes.pool.release(conn)


class Deadline:
    """Cancels a statement of one sequential caller that runs longer than ``limit`` seconds.

    asyncpg arms a ``call_later`` for each statement on a connection with a
    ``command_timeout`` and cancels it when the answer comes: about 10 µs of CPU per
    statement on a small machine, where a whole single enqueue costs about 100. A deadline keeps one
    timer instead. :meth:`start` notes the time; the timer is armed when none is pending,
    and when it fires it cancels the statement running then if that one is overdue, or
    re-arms for that statement's own deadline. A caller that runs a statement after
    another thus pays a clock read per statement and one timer per ``limit`` seconds.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._task: asyncio.Task[Any] | None = None
        self._started = 0.0
        self._cancelling = 0
        self._expired = False
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """A statement starts in the current task: from now it has ``limit`` seconds."""
        task = asyncio.current_task()
        assert task is not None
        self._task, self._cancelling = task, task.cancelling()
        self._started = time.monotonic()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.limit, self._check)

    def stop(self) -> bool:
        """The statement ended; True if the deadline cancelled it (and nobody else did too).

        Undoes the deadline's own cancellation request, as ``asyncio.timeout`` does. A
        second call is a no-op that returns False.
        """
        task, self._task = self._task, None
        if not self._expired or task is None:
            return False
        self._expired = False
        return task.uncancel() <= self._cancelling

    def cancel(self) -> None:
        """Disarm the timer (the caller is done with statements for good)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        task = self._task
        if task is None or self._expired:  # idle, or cancelled already: the next start() arms again
            return
        left = self._started + self.limit - time.monotonic()
        if left > 0:
            self._timer = asyncio.get_running_loop().call_later(left, self._check)
            return
        self._expired = True
        task.cancel()


class DedicatedLane(_OneAtATime):
    """One statement at a time on a connection of the lane's own, bounded by a :class:`Deadline`.

    ``connect`` opens the connection (without a ``command_timeout``), at the first
    statement and whenever the last one was lost. It is a connection beside the pool,
    not from it. Opening it counts against the deadline too. A statement that fails
    keeps the connection unless it is closed or left in a transaction: asyncpg lets
    the cancellation of an interrupted statement finish before the next one starts.
    """

    def __init__(self, connect: Callable[[], Awaitable[Any]], limit: float) -> None:
        super().__init__()
        self._connect = connect
        self._deadline = Deadline(limit)

    async def run(self, fn: Callable[Concatenate[Any, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(connection, *args, **kwargs)``; raises ``TimeoutError`` after ``limit`` seconds."""
        if self._closed:
            raise RuntimeError("the lane is closed")
        self._take()
        deadline = self._deadline
        deadline.start()
        conn = self._conn
        try:
            if conn is None or conn.is_closed():
                conn = self._conn = await self._connect()
            return await fn(conn, *args, **kwargs)
        except BaseException as exc:
            if conn is not None and not conn.is_closed() and conn.is_in_transaction():
                conn.terminate()  # never leave a transaction open for the next caller
            if isinstance(exc, asyncio.CancelledError) and deadline.stop():
                raise TimeoutError(f"the statement took longer than command_timeout ({deadline.limit:g} s)") from None
            raise
        finally:
            deadline.stop()
            self.busy = False
            if self._closed:
                await self._close_connection()

    async def close(self) -> None:
        """Close the connection (one in use closes when its statement ends); no statement runs after."""
        self._closed = True
        if not self.busy:  # else the statement in flight keeps its deadline and closes when it ends
            await self._close_connection()

    async def _close_connection(self) -> None:
        self._deadline.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=self._deadline.limit)
