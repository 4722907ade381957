"""What the floor, ours and the soak share: configuration, results, the meters, child processes, the producer.

Every measurement is a :class:`Result` keyed by ``(section, variant)``. A measured block is
``async with measured(admin) as m:``, then ``m.fill(result, jobs)`` copies wall time, client CPU,
server CPU and notes on the machine in.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count() or 1
Conn = Any  # an asyncpg connection (asyncpg's own type is generic over its record class)


def bench_dsn() -> str:
    return os.environ.get("AIOJOBS_PG_BENCH_DSN") or "postgresql://root@127.0.0.1:5432/test"


def tagged(dsn: str) -> str:
    """``dsn`` with this run's ``application_name``, which every connection of the run then carries."""
    return f"{dsn}{'&' if '?' in dsn else '?'}application_name=aiojobs_pg_bench_{os.getpid()}"


def schema_name(impl: str) -> str:
    """A schema of this run's own (the PID in its name): two runs on one server never share tables."""
    return f"bench_{impl}_{os.getpid()}"


def commit() -> str:
    """The checked-out commit, ``+changes`` when the working tree differs from it."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""
    return git("rev-parse", "--short", "HEAD") + ("+changes" if git("status", "--porcelain") else "")


async def server_settings(conn: Conn, names: Sequence[str]) -> dict[str, str]:
    return {r[0]: r[1] for r in await conn.fetch("SELECT s, current_setting(s) FROM unnest($1::text[]) AS s",
                                                 list(names))}


@dataclass(frozen=True)
class Config:
    dsn: str
    n: int = 20_000  # jobs enqueued one by one
    bulk: int = 200_000  # jobs enqueued in batches, and jobs drained
    batch: int = 1_000  # jobs per batch enqueue (enqueue_many; the floor's unnest)
    concurrency: int = 100  # ours: handlers per drain worker process (the floor's runs one loop claiming 100)
    latency_rate: float = 50.0
    latency_seconds: float = 10.0
    soak_rate: float = 500.0
    soak_seconds: float = 30.0
    memory_jobs: int = 1_000_000
    overview_runs: int = 1_000_000  # history rows under the overview's calls


@dataclass
class Result:
    impl: str
    section: str
    variant: str
    n: int
    seconds: float = 0.0
    jobs_per_s: float | None = None
    pg_cpu_s: float | None = None  # the run's own connections (the whole server's is in extra)
    client_cpu_s: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # what fails the run: lost jobs, a section that did not finish
    extra: dict[str, Any] = field(default_factory=dict)

    def us_per_job(self, cpu_s: float | None) -> float | None:
        return None if cpu_s is None or not self.n else 1e6 * cpu_s / self.n

    def check(self, what: str, got: int, expected: int) -> None:
        self.extra[what.replace(" ", "_")] = got
        if got != expected:
            self.errors.append(f"{what}: {got}, expected {expected}")

    def latencies(self, seconds: Sequence[float]) -> None:
        ms = [1000.0 * s for s in seconds]
        self.p50_ms, self.p95_ms, self.p99_ms = (percentile(ms, q) for q in (50, 95, 99))
        self.extra["max_ms"] = max(ms, default=None)

    def to_json(self) -> dict[str, Any]:
        return {**vars(self), "pg_us_per_job": self.us_per_job(self.pg_cpu_s),
                "client_us_per_job": self.us_per_job(self.client_cpu_s)}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between the closest ranks; NaN for no values."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# --------------------------------------------------------------------------- meters


def _stat(pid: int | str) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (after the command name, which may hold spaces)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2:].split()


def _cpu_ns(pid: int | str, st: list[str]) -> int:
    """A process's own CPU time (schedstat: ns; else utime + stime in ticks) plus its reaped children's."""
    try:
        own = int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        own = (int(st[11]) + int(st[12])) * 1_000_000_000 // TICK
    return own + (int(st[13]) + int(st[14])) * 1_000_000_000 // TICK


def _boot_time() -> float | None:
    try:
        return next(float(x.split()[1]) for x in Path("/proc/stat").read_text().splitlines() if x.startswith("btime "))
    except (OSError, StopIteration):
        return None


def machine_cpu() -> tuple[float, float]:
    """This machine's busy CPU seconds since boot (user, nice, system, irq, softirq) and its steal."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (f[0] + f[1] + f[2] + f[5] + f[6]) / TICK, f[7] / TICK


class ServerCpu:
    """CPU time of the PostgreSQL server, from this machine's /proc: the whole server and each backend.

    The figure reported is that of the run's own backends (their ``application_name`` is the run's,
    see :func:`tagged`), which other sessions on the server do not disturb; the whole server's (the
    postmaster and all its children, exited ones included) is kept beside it. A backend that exits
    during a section is lost from the first: drain worker processes keep their connections until the
    reading has been taken.
    """

    note: str | None = None  # why the server's CPU is not measured, once known (a remote server, no /proc)

    def __init__(self, postmaster: int | None) -> None:
        self.postmaster = postmaster

    @classmethod
    async def attach(cls, conn: Conn) -> ServerCpu:
        """Find the postmaster through ``conn``'s backend, after a CHECKPOINT (when the role may): what
        earlier sections left dirty is written out, not by a checkpoint that lands in this section."""
        with contextlib.suppress(asyncpg.PostgresError):
            await conn.execute("CHECKPOINT")
        pid, started = await conn.fetchrow(
            "SELECT pg_backend_pid(), extract(epoch FROM pg_postmaster_start_time())::float8")
        backend = _stat(pid)
        parent = _stat(backend[1]) if backend else None
        boot = _boot_time()
        if backend is None or parent is None or boot is None or abs(boot + int(parent[19]) / TICK - started) > 30:
            cls.note = "the server is not on this machine (or not in this PID namespace): server CPU not measured"
            return cls(None)
        return cls(int(backend[1]))

    def read(self) -> tuple[float, dict[int, float]] | None:
        """The server's CPU seconds so far, and each live child's own."""
        if self.postmaster is None:
            return None
        children = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and (st := _stat(entry.name)) is not None and int(st[1]) == self.postmaster:
                children[int(entry.name)] = _cpu_ns(entry.name, st)
        parent = _stat(self.postmaster)  # last: a child reaped during the scan is in its count now
        if parent is None:
            return None
        return (sum(children.values()) + _cpu_ns(self.postmaster, parent)) / 1e9, {
            pid: ns / 1e9 for pid, ns in children.items()}


@dataclass
class Meter:
    seconds: float = 0.0
    client_cpu_s: float = 0.0  # this process's; a section whose clients are other processes sets their sum
    pg_cpu_s: float | None = None  # the run's own backends
    pg_server_s: float | None = None  # the whole server: other sessions and background processes too
    busy_s: float = 0.0
    steal_s: float = 0.0

    def fill(self, res: Result, jobs: int | None = None) -> Result:
        res.seconds, res.client_cpu_s, res.pg_cpu_s = self.seconds, self.client_cpu_s, self.pg_cpu_s
        if jobs is not None:
            res.jobs_per_s = jobs / self.seconds
        machine = self.seconds * CPUS
        other = self.busy_s - self.client_cpu_s - (self.pg_server_s or 0.0)
        res.extra.update(pg_server_cpu_s=self.pg_server_s, other_cpu_s=round(other, 3), steal_s=round(self.steal_s, 3))
        if self.pg_server_s is not None and self.pg_cpu_s is not None and self.pg_server_s - self.pg_cpu_s > max(
                0.05, 0.2 * self.pg_server_s):
            res.notes.append(f"{self.pg_server_s - self.pg_cpu_s:.2f} of the server's {self.pg_server_s:.2f} CPU s"
                             " were outside this run's connections (other sessions, background work)")
        if self.seconds > 0.5 and other > 0.25 * machine:
            res.notes.append(f"other processes took {other / machine:.0%} of the machine")
        if self.steal_s > 0.05 * machine:
            res.notes.append(f"the hypervisor took {self.steal_s / machine:.0%} of the machine (steal)")
        return res


@contextlib.asynccontextmanager
async def admin_on(dsn: str, schema: str) -> AsyncIterator[Conn]:
    """An admin connection for a measurement in ``schema``, which is dropped before (a killed run's
    leftovers) and after."""
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        yield admin
    finally:
        try:
            await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await admin.close()


async def count(admin: Conn, sql: str, schema: str) -> int:
    """``sql``'s count, ``{s}`` in it naming ``schema``."""
    return int(await admin.fetchval(sql.format(s=schema)))


@contextlib.asynccontextmanager
async def measured(admin: Conn) -> AsyncIterator[Meter]:
    """Time the block: wall clock, this process's CPU, the server's CPU, the machine's busy and stolen time.

    ``admin`` is a connection of the run that stays idle through the block.
    """
    cpu, m = await ServerCpu.attach(admin), Meter()
    pg0, (busy0, steal0), c0, t0 = cpu.read(), machine_cpu(), time.process_time(), time.perf_counter()
    yield m
    m.seconds, m.client_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    pg1, (busy1, steal1) = cpu.read(), machine_cpu()
    m.busy_s, m.steal_s = busy1 - busy0, steal1 - steal0
    if pg0 is not None and pg1 is not None:
        ours = await admin.fetch("SELECT pid FROM pg_stat_activity"
                                 " WHERE application_name = current_setting('application_name')")
        m.pg_server_s = pg1[0] - pg0[0]
        m.pg_cpu_s = sum(pg1[1].get(r[0], 0.0) - pg0[1].get(r[0], 0.0) for r in ours)


# --------------------------------------------------------------------------- child processes
# A child (`python -m benchmarks.<module> ...`) sets up, prints READY and waits for "go [t0]" on stdin;
# it may print "MINUTE {json}" (the soak), and prints "DONE {json}" at the end. It then waits for
# stdin to close (a drain keeps its connections open until the server's CPU has been read); EOF on
# stdin also tells it that the parent is gone.


def emit(tag: str, payload: dict[str, Any] | None = None) -> None:
    print(tag if payload is None else f"{tag} {json.dumps(payload, separators=(',', ':'))}", flush=True)


async def readline() -> str:
    return str(await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip()


async def ready() -> str:
    """In a child: report READY and wait for the parent's "go"; what follows it on the line."""
    emit("READY")
    if not (line := await readline()).startswith("go"):
        raise SystemExit(1)
    return line[2:].strip()


async def done(claimed: int, cpu0: float) -> None:
    """In a drain worker process: report the jobs it claimed and its CPU time since ``cpu0``; wait for EOF."""
    emit("DONE", {"claimed": claimed, "cpu_s": time.process_time() - cpu0})
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def drain_worker_args(module: str) -> argparse.Namespace:
    """The command line of a drain worker process, ``python -m <module> --dsn DSN --schema S [--concurrency N]``
    (drain_processes starts them)."""
    p = argparse.ArgumentParser(prog=f"python -m {module}", description="one drain worker process")
    p.add_argument("--dsn", required=True)
    p.add_argument("--schema", required=True)
    p.add_argument("--concurrency", type=int, default=100, help="handlers in flight (the floor's loop ignores it)")
    return p.parse_args()


class Child:
    """The parent's side of a child process: what it reported so far."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name, self.proc, self.ready, self.eof = name, proc, False, False
        self.minutes: dict[int, dict[str, Any]] = {}
        self.done: dict[str, Any] | None = None
        self.changed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def spawn(cls, name: str, module: str, *args: str) -> Child:
        return cls(name, await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, *args, cwd=ROOT, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE))

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            tag, _, rest = (line := raw.decode().rstrip()).partition(" ")
            if tag == "READY":
                self.ready = True
            elif tag == "MINUTE":
                d = json.loads(rest)
                self.minutes[d["m"]] = d
            elif tag == "DONE":
                self.done = json.loads(rest)
            else:
                print(f"[{self.name}] {line}", file=sys.stderr)
            self.changed.set()
        self.eof = True
        self.changed.set()

    def send(self, line: str) -> None:
        with contextlib.suppress(OSError, RuntimeError, AttributeError):
            self.proc.stdin.write(line.encode() + b"\n")  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Close its stdin (a worker drains and exits); kill it if it has not exited 15 s later."""
        with contextlib.suppress(OSError, RuntimeError, AttributeError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            await asyncio.wait_for(self.proc.wait(), 15.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        self.reader.cancel()


async def until(children: Sequence[Child], cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait for ``cond()``, woken by each line a child prints; fail if one exits first, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not cond():
        if dead := [c for c in children if c.eof and c.done is None]:
            raise RuntimeError(f"{dead[0].name} exited ({await dead[0].proc.wait()}) while waiting for {what}")
        if (left := deadline - time.monotonic()) <= 0:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        waits = [asyncio.ensure_future(c.changed.wait()) for c in children]
        await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        for c in children:
            c.changed.clear()  # what set it is already in the state that cond() reads


async def drain_processes(module: str, args: list[str], processes: int, admin: Conn,
                          wait_s: float) -> tuple[Meter, list[dict[str, Any]]]:
    """Run ``processes`` worker processes of ``module`` from "go" to their last DONE; the meter and their DONEs."""
    procs = [await Child.spawn(f"worker {k + 1}", module, *args) for k in range(processes)]
    try:
        await until(procs, lambda: all(p.ready for p in procs), 60.0, "the worker processes to be ready")
        async with measured(admin) as m:
            for p in procs:
                p.send("go")
            await until(procs, lambda: all(p.done is not None for p in procs), wait_s, "the drain's end")
        dones = [p.done for p in procs if p.done is not None]
        m.client_cpu_s = sum(d["cpu_s"] for d in dones)
        return m, dones
    finally:
        await asyncio.gather(*(p.stop() for p in procs))


# --------------------------------------------------------------------------- paced producer


async def warm_up(enqueue: Callable[[int], Awaitable[None]], started: list[float]) -> None:
    """One job through the whole path (connections opened, statements prepared), then an idle consumer."""
    await enqueue(-1)
    for _ in range(1000):
        if started:
            break
        await asyncio.sleep(0.01)
    started.clear()
    await asyncio.sleep(0.2)


async def paced(enqueue: Callable[[int], Awaitable[None]], started: list[float], rate: float, seconds: float,
                sizes: Callable[[], Awaitable[dict[str, float]]] | None = None) -> tuple[int, list[dict[str, Any]]]:
    """Enqueue ``rate * seconds`` jobs one by one at ``rate`` per second, then wait until all have started.

    ``started`` gets each job's latency (handler start minus the stamp taken just before its enqueue),
    from the consumer. With ``sizes``, about ten samples are taken along the way: jobs enqueued and
    started, the backlog, the window's latency p50/p99 and ``sizes()`` (the tables' size). Returns the
    number of jobs and the samples; a job that has not started 30 s after the last enqueue is left out.
    """
    n = max(1, round(rate * seconds))
    samples: list[dict[str, Any]] = []
    sent = 0
    t0 = time.perf_counter()

    async def sample() -> None:
        every, seen = max(1.0, seconds / 10), 0
        while True:
            await asyncio.sleep(t0 + every * (len(samples) + 1) - time.perf_counter())
            window, seen = [1000 * s for s in started[seen:]], len(started)
            samples.append({"t_s": round(time.perf_counter() - t0, 1), "enqueued": sent, "started": seen,
                            "backlog": sent - seen, "p50_ms": round(percentile(window, 50), 1),
                            "p99_ms": round(percentile(window, 99), 1), **(await sizes() if sizes else {})})

    sampler = asyncio.create_task(sample()) if sizes else None
    try:
        for i in range(n):
            if (delay := t0 + i / rate - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            await enqueue(i)
            sent += 1
        for _ in range(6000):  # 30 s
            if len(started) >= n:
                break
            await asyncio.sleep(0.005)
    finally:
        if sampler:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
    return n, samples
