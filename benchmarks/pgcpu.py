"""PostgreSQL server CPU seconds spent during a measured section.

The figure comes from ``/proc``, so it is only available when the server runs on
this machine, in a PID namespace this process can see.  Anything else (a remote
server, a container with its own PID namespace, a ``/proc`` without permission)
gives ``None`` and a :attr:`PgCpu.note` that says why; a benchmark then prints
``-`` instead of a figure.

Two figures are taken:

``server_s``
    The whole server: the postmaster and every live process whose parent is the
    postmaster (client backends, walwriter, checkpointer, background writer,
    autovacuum launcher and workers, parallel workers, ...), each with its own
    CPU time and its reaped children's (``cutime + cstime``).  The kernel adds a
    child's times to its parent's ``cutime``/``cstime`` when the parent reaps
    it, and the postmaster reaps its children promptly, so a backend or an
    autovacuum worker that exits during the section still counts.  The only
    loss is a race of one sample: a child that exits and is reaped between the
    scan of its ``stat`` and the read of the postmaster's may be counted twice
    or, if it exits just before the scan and is reaped just after, not at all.
    To keep that out of the figures the benchmarks keep their connections open
    through the measured section.  Other sessions on the same server (a test
    run, ...) are counted too: run benchmarks on a quiet server.

``backends_s``
    Only the backends that serve the connections the benchmark handed to
    :meth:`PgCpu.attach`.  It excludes background processes and other
    sessions, so it is robust to a busy server, but misses whatever the code
    under test does on connections it opened on its own.  A tracked backend
    that exits during the section loses its whole count here.

A live process's own time is read from ``/proc/<pid>/schedstat`` (time on CPU
in nanoseconds) where the kernel has it, else from ``utime + stime`` of
``/proc/<pid>/stat`` in clock ticks (``os.sysconf('SC_CLK_TCK')``, usually
100 Hz, so +-10 ms per process and per reading).  Reaped children's time is
only in ticks.

Usage::

    cpu = await PgCpu.attach(conn, pool)   # one DB round trip per connection
    cpu.start()                            # pure /proc reads, no DB traffic
    ...                                    # the measured section
    usage = cpu.stop()                     # CpuUsage, or None (see cpu.note)

or ``with cpu.measure() as m: ...`` and then ``m.usage``.  ``start``/``stop``
are deliberately synchronous and never talk to the server, so the measurement
itself adds no server CPU to the section.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
import asyncpg.pool

__all__ = [
    "CpuMeasurement",
    "CpuUsage",
    "PgCpu",
    "backend_pids",
    "clock_ticks",
]

PROC = Path("/proc")

# A single connection, plain or borrowed from a pool.
Conn: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"
# What backend PIDs can be collected from: a connection, a pool, or a known PID.
Source: TypeAlias = "Conn | asyncpg.pool.Pool[Any] | int"

# How far apart the kernel's start time of the postmaster and
# pg_postmaster_start_time() may be for the two to be taken as the same process.
_START_TIME_TOLERANCE_S = 30.0


def clock_ticks() -> int:
    """Clock ticks per second, the unit of the times in ``/proc/<pid>/stat``."""
    return int(os.sysconf("SC_CLK_TCK"))


@dataclass(frozen=True)
class _Stat:
    pid: int
    comm: str
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int
    starttime: int  # clock ticks after boot
    run_ns: int | None  # /proc/<pid>/schedstat: time on CPU, nanoseconds

    def own_ns(self, tick_ns: int) -> int:
        """CPU time of the process itself: schedstat if there, else utime + stime."""
        if self.run_ns is not None:
            return self.run_ns
        return (self.utime + self.stime) * tick_ns

    def reaped_ns(self, tick_ns: int) -> int:
        """CPU time of its children that have exited and been reaped."""
        return (self.cutime + self.cstime) * tick_ns


def _read_run_ns(pid: int) -> int | None:
    try:
        return int((PROC / str(pid) / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def process_cpu_ns(pid: int) -> int | None:
    """Time one live process has spent on CPU so far, in nanoseconds (None if unreadable).

    For figures that need no whole-server accounting: the probes (probes.py) read one
    backend before and after each statement.
    """
    return _read_run_ns(pid)


def _read_stat(pid: int) -> _Stat | None:
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    # comm is in parentheses and may itself hold spaces or parentheses.
    lpar, rpar = raw.find("("), raw.rfind(")")
    if lpar < 0 or rpar < 0:
        return None
    rest = raw[rpar + 2 :].split()
    # rest[0] is field 3 (state); field k of proc(5) is rest[k - 3].
    try:
        return _Stat(
            pid=pid,
            comm=raw[lpar + 1 : rpar],
            ppid=int(rest[1]),
            utime=int(rest[11]),
            stime=int(rest[12]),
            cutime=int(rest[13]),
            cstime=int(rest[14]),
            starttime=int(rest[19]),
            run_ns=_read_run_ns(pid),
        )
    except (IndexError, ValueError):
        return None


def _all_stats() -> Iterator[_Stat]:
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            st = _read_stat(int(entry.name))
            if st is not None:
                yield st


def _boot_time() -> float | None:
    try:
        for line in (PROC / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


async def _pids_of_pool(pool: asyncpg.pool.Pool[Any]) -> set[int]:
    """PIDs of the connections a pool holds now, acquired or not.

    Read from asyncpg's list of connection holders (private, but stable for years):
    acquiring every connection to ask each for its PID would wait forever for those
    that aiojobs_pg's lanes keep acquired. Connections the pool opens later are not
    tracked (they still count in ``server_s``).
    """
    holders = getattr(pool, "_holders", [])
    return {h._con.get_server_pid() for h in holders if h._con is not None and not h._con.is_closed()}


async def backend_pids(*sources: Source) -> set[int]:
    """Server PIDs of the backends behind ``sources``.

    A source is an asyncpg ``Connection`` (one ``SELECT pg_backend_pid()``), an
    asyncpg ``Pool`` (every connection it holds at the time of the call; see
    :func:`_pids_of_pool`) or a PID already known.
    """
    pids: set[int] = set()
    for src in sources:
        if isinstance(src, int):
            pids.add(src)
        elif isinstance(src, asyncpg.pool.Pool):
            pids |= await _pids_of_pool(src)
        else:
            pids.add(int(await src.fetchval("SELECT pg_backend_pid()")))
    return pids


async def _find_postmaster(conn: Conn) -> tuple[int | None, str | None]:
    """The postmaster's PID as seen in this machine's ``/proc``, or why not.

    The parent of our own backend is the candidate.  It is accepted if
    ``<data_directory>/postmaster.pid`` names it (needs a superuser or
    ``pg_read_all_settings`` and a readable data directory), or else if its
    kernel start time matches ``pg_postmaster_start_time()``; both guard against
    a remote server whose backend PID happens to exist here.
    """
    if not (PROC / "self" / "stat").exists():
        return None, "no /proc on this machine: server CPU not measured"
    row = await conn.fetchrow("SELECT pg_backend_pid() AS pid, pg_postmaster_start_time() AS started")
    assert row is not None
    pid: int = row["pid"]
    started: datetime = row["started"]
    backend = _read_stat(pid)
    if backend is None:
        return None, (
            f"backend pid {pid} is not visible in /proc (remote server or another "
            "PID namespace): server CPU not measured"
        )
    candidate = backend.ppid

    data_dir: str | None
    try:
        data_dir = await conn.fetchval("SHOW data_directory")
    except asyncpg.PostgresError:
        data_dir = None
    if data_dir:
        with contextlib.suppress(OSError, ValueError, IndexError):
            first = (Path(data_dir) / "postmaster.pid").read_text().splitlines()[0]
            if int(first) == candidate:
                return candidate, None

    parent = _read_stat(candidate)
    boot = _boot_time()
    if parent is not None and boot is not None:
        kernel_start = boot + parent.starttime / clock_ticks()
        if abs(kernel_start - started.timestamp()) <= _START_TIME_TOLERANCE_S:
            return candidate, None
    return None, (
        f"could not confirm that pid {candidate} (parent of backend {pid}) is the "
        "server's postmaster: server CPU not measured"
    )


@dataclass(frozen=True)
class CpuUsage:
    """CPU seconds the server spent between :meth:`PgCpu.start` and :meth:`PgCpu.stop`."""

    server_s: float
    """Postmaster and all its children, exited ones included (see module doc)."""
    backends_s: float
    """Only the tracked backends (the benchmark's own connections)."""
    wall_s: float
    """Wall-clock seconds between start and stop."""
    lost_backends: int = 0
    """Tracked backends that exited during the section (their time is not in backends_s)."""


@dataclass
class CpuMeasurement:
    """Filled in when a :meth:`PgCpu.measure` block exits."""

    usage: CpuUsage | None = None
    note: str | None = None


@dataclass
class _Snapshot:
    server_ns: int
    backend_ns: dict[int, int]
    at: float


async def _checkpoint(conn: Any) -> None:
    """Write out what earlier sections (and the preload) left dirty before this one is measured.

    Otherwise a checkpoint that the previous section's WAL brought on lands in whichever
    section runs next, for one implementation and not the other. Needs superuser or
    pg_checkpoint; without it the section runs as it is.
    """
    with contextlib.suppress(asyncpg.PostgresError):
        await conn.execute("CHECKPOINT")


@dataclass
class PgCpu:
    """Server CPU meter for one measured section; build it with :meth:`attach`."""

    postmaster_pid: int | None = None
    backend_pids: frozenset[int] = frozenset()
    note: str | None = None
    _start: _Snapshot | None = field(default=None, repr=False)

    @classmethod
    async def attach(cls, *sources: Source) -> PgCpu:
        """Find the postmaster and collect the backend PIDs behind ``sources``.

        Never raises for an unmeasurable server: the meter is then unavailable
        (:attr:`available` false, :attr:`note` says why) and :meth:`stop`
        returns ``None``.
        """
        conn = next(
            (s for s in sources if isinstance(s, (asyncpg.Connection, asyncpg.pool.PoolConnectionProxy))),
            None,
        )
        pool = next((s for s in sources if isinstance(s, asyncpg.pool.Pool)), None)
        if conn is not None:
            postmaster, note = await _find_postmaster(conn)
            await _checkpoint(conn)
        elif pool is not None:
            async with pool.acquire(timeout=10.0) as pooled:
                postmaster, note = await _find_postmaster(pooled)
                await _checkpoint(pooled)
        else:
            return cls(note="no connection given: server CPU not measured")
        if postmaster is None:
            return cls(note=note)
        pids = await backend_pids(*sources)
        return cls(postmaster_pid=postmaster, backend_pids=frozenset(pids))

    @property
    def available(self) -> bool:
        return self.postmaster_pid is not None

    def _snapshot(self) -> _Snapshot | None:
        pm = self.postmaster_pid
        if pm is None:
            return None
        tick_ns = 1_000_000_000 // clock_ticks()
        children = 0
        backends: dict[int, int] = {}
        for st in _all_stats():
            if st.ppid == pm:
                own = st.own_ns(tick_ns)
                children += own + st.reaped_ns(tick_ns)
                if st.pid in self.backend_pids:
                    backends[st.pid] = own
        # The postmaster last: a child reaped during the scan is then in its cutime.
        parent = _read_stat(pm)
        if parent is None:
            self.note = f"postmaster pid {pm} vanished: server CPU not measured"
            return None
        server = parent.own_ns(tick_ns) + parent.reaped_ns(tick_ns) + children
        return _Snapshot(server, backends, time.perf_counter())

    def start(self) -> None:
        """Take the starting reading (reads /proc only)."""
        self._start = self._snapshot()

    def stop(self) -> CpuUsage | None:
        """Take the closing reading; ``None`` if unavailable (see :attr:`note`)."""
        begin, self._start = self._start, None
        if begin is None:
            if self.note is None:
                self.note = "PgCpu.stop() without a successful start()"
            return None
        end = self._snapshot()
        if end is None:
            return None
        lost = [p for p in begin.backend_ns if p not in end.backend_ns]
        backend_ns = sum(t - begin.backend_ns.get(p, 0) for p, t in end.backend_ns.items())
        return CpuUsage(
            server_s=(end.server_ns - begin.server_ns) / 1e9,
            backends_s=backend_ns / 1e9,
            wall_s=end.at - begin.at,
            lost_backends=len(lost),
        )

    @contextlib.contextmanager
    def measure(self) -> Iterator[CpuMeasurement]:
        """``with cpu.measure() as m: ...``; ``m.usage`` is set on exit."""
        m = CpuMeasurement()
        self.start()
        try:
            yield m
        finally:
            m.usage = self.stop()
            m.note = self.note


async def _demo(dsn: str) -> None:
    """Burn some server CPU on two connections and print what was measured."""
    conns = [await asyncpg.connect(dsn) for _ in range(2)]
    try:
        cpu = await PgCpu.attach(*conns)
        print(f"postmaster={cpu.postmaster_pid} backends={sorted(cpu.backend_pids)}")
        with cpu.measure() as m:
            await asyncio.gather(*(c.execute("SELECT count(*) FROM generate_series(1, 3000000)") for c in conns))
        print(m.usage, m.note)
    finally:
        for c in conns:
            await c.close()


if __name__ == "__main__":
    asyncio.run(_demo(os.environ.get("AIOJOBS_PG_BENCH_DSN", "postgresql://root@127.0.0.1:5432/test")))
