"""Shared pieces of the benchmarks: configuration, result record, sections, helpers.

Every implementation under test ("floor", the hand-written reference, and
later "ours", aiojobs_pg) produces :class:`Result` records keyed by
``(section, variant)``; the report puts records with the same key side by side.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.pgcpu import Conn, CpuUsage, PgCpu

__all__ = [
    "DEFAULT_DSN",
    "DSN_ENV",
    "BenchConfig",
    "Measured",
    "Result",
    "Section",
    "SectionFn",
    "bench_dsn",
    "free_connection_slots",
    "measured",
    "percentile",
    "steal_s",
]

DSN_ENV = "AIOJOBS_PG_BENCH_DSN"
DEFAULT_DSN = "postgresql://root@127.0.0.1:5432/test"


def bench_dsn() -> str:
    """The DSN benchmarks connect to: ``$AIOJOBS_PG_BENCH_DSN`` or the local default."""
    return os.environ.get(DSN_ENV) or DEFAULT_DSN


@dataclass(frozen=True)
class BenchConfig:
    """What every section is given; "floor" and "ours" get the same one."""

    dsn: str
    n: int = 20_000
    """Jobs per throughput measurement (enqueue and each drain variant)."""
    batch: int = 1_000
    """Rows per statement in the batch enqueue."""
    claim_batch: int = 100
    """Jobs a worker claims per round trip in drain and latency."""
    drain_concurrency: tuple[int, ...] = (1, 10, 50, 100)
    """Requested concurrency of the drain variants (the variant key is ``c<N>``)."""
    max_connections: int = 16
    """Cap on the connections one drain variant of the floor opens."""
    latency_n: int = 500
    latency_rate: float = 50.0
    """Jobs per second the latency producer aims at."""
    quick: bool = False
    long: bool = False
    """``--long``: the long sections (``Section.long``) run too."""


@dataclass
class Result:
    """Figures of one measured variant of one section for one implementation."""

    impl: str
    """"floor" or "ours" (or any other implementation registered later)."""
    section: str
    """"enqueue", "drain", "latency", ..."""
    variant: str
    """"single", "batch", "c10", "50/s", ..."""
    n: int
    """Jobs in the measured section."""
    seconds: float
    """Wall-clock seconds of the measured section."""
    jobs_per_s: float | None = None
    pg_cpu_s: float | None = None
    """Server CPU seconds, all PostgreSQL processes (see pgcpu.py); None if unmeasurable."""
    pg_backend_cpu_s: float | None = None
    """Server CPU seconds of the benchmark's own backends only."""
    client_cpu_s: float | None = None
    """CPU seconds of this Python process during the section."""
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.section, self.variant)

    @property
    def pg_cpu_ms_per_job(self) -> float | None:
        if self.pg_cpu_s is None or self.n <= 0:
            return None
        return 1000.0 * self.pg_cpu_s / self.n

    @property
    def client_cpu_ms_per_job(self) -> float | None:
        if self.client_cpu_s is None or self.n <= 0:
            return None
        return 1000.0 * self.client_cpu_s / self.n

    def to_json(self) -> dict[str, Any]:
        return {
            "impl": self.impl,
            "section": self.section,
            "variant": self.variant,
            "n": self.n,
            "seconds": self.seconds,
            "jobs_per_s": self.jobs_per_s,
            "pg_cpu_s": self.pg_cpu_s,
            "pg_cpu_ms_per_job": self.pg_cpu_ms_per_job,
            "pg_backend_cpu_s": self.pg_backend_cpu_s,
            "client_cpu_s": self.client_cpu_s,
            "client_cpu_ms_per_job": self.client_cpu_ms_per_job,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "notes": list(self.notes),
            "extra": dict(self.extra),
        }


SectionFn = Callable[[BenchConfig], Awaitable[list[Result]]]
"""A section: runs all its variants with the config, returns one Result per variant."""


@dataclass(frozen=True)
class Section:
    """A named group of measurements of one implementation."""

    impl: str
    name: str
    run: SectionFn
    description: str = ""
    long: bool = False
    """Runs only with ``--long`` (e.g. the memory soak of "ours")."""

    @property
    def qualname(self) -> str:
        return f"{self.impl}.{self.name}"

    def matches(self, pattern: str) -> bool:
        """``--only`` matching: the impl ("floor"), the name ("drain") or both ("floor.drain")."""
        p = pattern.strip().lower()
        return p in (self.impl.lower(), self.name.lower(), self.qualname.lower())


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linear between closest ranks."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


async def free_connection_slots(conn: Conn) -> int:
    """Connections that can still be opened to the server by a non-superuser, minus 2 spare."""
    row = await conn.fetchrow(
        "SELECT current_setting('max_connections')::int AS max_conn,"
        " current_setting('superuser_reserved_connections')::int AS reserved,"
        " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int"
        " AS used"
    )
    assert row is not None
    return max(0, int(row["max_conn"]) - int(row["reserved"]) - int(row["used"]) - 2)


STEAL_NOTE_SHARE = 0.05
"""A section is flagged when the hypervisor took more than this share of the machine's CPU time."""


def steal_s() -> float | None:
    """CPU seconds the hypervisor has taken from this machine since boot (``steal`` in /proc/stat), or None.

    On a shared virtual machine, time stolen during a section slows whatever ran then, the
    client and the server alike, so two sections measured seconds apart can differ by it.
    """
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Measured:
    """Wall clock, client CPU, server CPU and stolen CPU time of one measured section."""

    seconds: float = 0.0
    client_cpu_s: float = 0.0
    usage: CpuUsage | None = None
    note: str | None = None
    steal_s: float | None = None

    @classmethod
    def total(cls, parts: Sequence[Measured]) -> Measured:
        """The sum of a section measured in several blocks (server CPU and steal only if every block has them)."""
        usages = [p.usage for p in parts if p.usage is not None]
        steals = [p.steal_s for p in parts if p.steal_s is not None]
        usage = None
        if parts and len(usages) == len(parts):
            usage = CpuUsage(server_s=sum(u.server_s for u in usages), backends_s=sum(u.backends_s for u in usages),
                             wall_s=sum(u.wall_s for u in usages), lost_backends=sum(u.lost_backends for u in usages))
        return cls(seconds=sum(p.seconds for p in parts), client_cpu_s=sum(p.client_cpu_s for p in parts),
                   usage=usage, note=next((p.note for p in parts if p.note), None),
                   steal_s=sum(steals) if len(steals) == len(parts) else None)

    def fill(self, result: Result) -> Result:
        """Copy the figures into ``result`` (and the pgcpu note, if any).

        ``jobs_per_s`` is left to the section, which knows whether it means anything.
        """
        result.seconds = self.seconds
        result.client_cpu_s = self.client_cpu_s
        if self.steal_s is not None:
            result.extra["steal_s"] = round(self.steal_s, 3)
            share = self.steal_s / (self.seconds * (os.cpu_count() or 1)) if self.seconds > 0 else 0.0
            if share > STEAL_NOTE_SHARE:
                result.notes.append(
                    f"the hypervisor took {share:.0%} of the machine's CPU time during this section"
                    f" ({self.steal_s:.1f} s of steal): its figures are not comparable with a quiet section's"
                )
        if self.usage is not None:
            result.pg_cpu_s = self.usage.server_s
            result.pg_backend_cpu_s = self.usage.backends_s
            outside = self.usage.server_s - self.usage.backends_s
            if outside > max(0.02, 0.2 * self.usage.server_s):
                result.notes.append(
                    f"{outside:.2f} of {self.usage.server_s:.2f} server CPU s were outside the"
                    " benchmark's backends: other sessions or background work (busy server?)"
                )
            if self.usage.lost_backends:
                result.notes.append(f"{self.usage.lost_backends} backend(s) exited during the section")
        elif self.note:
            result.notes.append(self.note)
        return result


@contextlib.contextmanager
def measured(cpu: PgCpu) -> Iterator[Measured]:
    """``with measured(cpu) as m: ...`` times a section: wall clock, client CPU, server CPU.

    The figures are in ``m`` once the block has exited.
    """
    m = Measured()
    cpu.start()
    stolen = steal_s()
    c0 = time.process_time()
    t0 = time.perf_counter()
    try:
        yield m
    finally:
        m.seconds = time.perf_counter() - t0
        m.client_cpu_s = time.process_time() - c0
        after = steal_s()
        m.steal_s = None if stolen is None or after is None else after - stolen
        m.usage = cpu.stop()
        m.note = cpu.note
