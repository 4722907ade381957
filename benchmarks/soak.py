"""``python -m benchmarks soak``: minutes of a steady stream, with pruning and autovacuum at work.

One enqueuer process adds jobs at a steady rate (by default half of what one worker process drains,
measured first) while worker processes run them with a no-op handler. History and job retention
are short, so pruning runs all along. Each minute it prints pickup latency, throughput, the size of
the jobs and history tables and their dead tuples; at the end it counts the jobs enqueued against
the runs, judges the goals and writes a plot. See benchmarks/README.md ("Soak").

Pickup latency is measured in the handler: its start (``time.time()``) minus the job's due time,
which the enqueuer stamps into the job's data just before the ``enqueue_many`` call that inserts it
(the job is due from its insert: ``next_run_at`` defaults to ``now()``). How far the enqueuer falls
behind its schedule is reported apart ("enq lag"). Each worker process keeps a histogram per minute
(1% wide buckets) and reports it; runs are counted there too, one byte per job number, so that
pruned history does not hide a run: the tallies are written to files when the workers stop.

The child processes are ``python -m benchmarks.soak --role worker|enqueuer ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path
from typing import Any

import asyncpg

from aiojobs_pg import App
from aiojobs_pg.embedded import embedded_dsn, stop_embedded
from benchmarks.common import CPUS, ROOT, Conn, _machine, drain_processes, tagged

HANDLER = "soak"
WINDOW = 60.0
"""Seconds per reported window (a minute)."""
SCALE = 100
"""Histogram buckets per factor e of latency: each bucket is 1% wide."""
SETTINGS = ["server_version", "autovacuum", "autovacuum_naptime", "autovacuum_vacuum_scale_factor",
            "autovacuum_vacuum_insert_scale_factor", "synchronous_commit", "fsync", "shared_buffers"]
P99_RATIO = 1.5
SIZE_RATIO = 1.2
SIZE_SLACK = 2**20
"""A table may also grow by 1 MiB over its size at minute 3: a table of a few pages flips by more than 20%."""
SIZE_REF_MINUTE = 3


# --------------------------------------------------------------------------- latency histograms


def bucket(seconds: float) -> int:
    return int(math.log(max(seconds * 1e6, 1.0)) * SCALE)


def hist_percentile(hist: dict[int, int], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of a histogram, in ms: its bucket's geometric middle."""
    total = sum(hist.values())
    if not total:
        return None
    rank, seen = max(1, math.ceil(total * q / 100)), 0
    for k in sorted(hist):
        seen += hist[k]
        if seen >= rank:
            return math.exp((k + 0.5) / SCALE) / 1000
    return None


def merge(hists: Sequence[dict[Any, int]]) -> dict[int, int]:
    out: dict[int, int] = defaultdict(int)
    for h in hists:
        for k, n in h.items():
            out[int(k)] += n  # keys are strings after JSON
    return dict(out)


# --------------------------------------------------------------------------- child processes
# Each prints READY, waits for "go <t0>" on stdin (t0: the common start, epoch seconds), prints
# "MINUTE {json}" after each window, and "DONE {json}" at the end. A worker runs until "stop" or
# EOF on stdin (EOF too when the parent died), then drains and writes its tally.


def emit(tag: str, payload: dict[str, Any] | None = None) -> None:
    print(tag if payload is None else f"{tag} {json.dumps(payload, separators=(',', ':'))}", flush=True)


async def readline() -> str:
    line: str = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.strip()


async def go() -> float:
    line = await readline()
    if not line.startswith("go "):
        raise SystemExit(1)
    return float(line.split()[1])


async def every_window(t0: float, report: Callable[[int], None]) -> None:
    """Call ``report(m)`` half a second after window ``m`` ends: what started in it has been recorded."""
    m = 0
    while True:
        await asyncio.sleep(max(0.0, t0 + WINDOW * (m + 1) + 0.5 - time.time()))
        report(m)
        m += 1


async def worker_child(args: argparse.Namespace) -> None:
    t0 = math.inf
    runs = 0
    seen = bytearray()  # runs per job number, capped at 255
    hists: dict[int, dict[int, int]] = defaultdict(dict)
    slowest: dict[int, float] = defaultdict(float)

    async def soak(data: Any) -> None:
        nonlocal runs
        now = time.time()
        i = data["i"]
        if i >= len(seen):
            seen.extend(bytes(i + 65536 - len(seen)))
        if seen[i] < 255:
            seen[i] += 1
        runs += 1
        late, m = now - data["t"], int((now - t0) // WINDOW)
        h, k = hists[m], bucket(late)
        h[k] = h.get(k, 0) + 1
        if late > slowest[m]:
            slowest[m] = late

    def report(m: int) -> None:
        h = hists.pop(m, {})
        emit("MINUTE", {"m": m, "runs": sum(h.values()), "hist": h, "max_ms": 1000 * slowest.pop(m, 0.0)})

    app = App(args.dsn, schema=args.schema, auto_migrate=False, history_retention=args.retention,
              job_retention=args.retention, maintenance_interval=args.maintenance_interval)
    app.register(HANDLER, soak)
    async with app, app.worker(concurrency=args.concurrency) as worker:
        for _ in range(1000):
            if worker.notifier.connected:
                break
            await asyncio.sleep(0.01)
        emit("READY")
        t0 = await go()
        reporter = asyncio.create_task(every_window(t0, report))
        await readline()  # "stop", or EOF
        reporter.cancel()
        claimed, rescued = worker.producer.claimed, worker.maintenance.rescued
    # The worker has drained and the pool is closed (its backends flushed their statistics).
    for m in sorted(hists):
        report(m)
    await asyncio.to_thread(Path(args.tally).write_bytes, seen)
    emit("DONE", {"runs": runs, "claimed": claimed, "rescued": rescued})


async def enqueuer_child(args: argparse.Namespace) -> None:
    """``rate`` jobs/s for ``seconds``: every ``tick``, one ``enqueue_many`` of the jobs due by the next tick.

    Ticks are absolute deadlines from t0: after a slow call the next one catches up, so the rate does
    not drift. Each job's data is its number and its due time: the moment its insert is sent. A
    minute's report has the jobs whose insert returned in it and how late the calls of the minute
    started against their tick (the lag).
    """
    sent, n = 0, round(args.rate * args.seconds)
    ticks = math.ceil(args.seconds / args.tick)
    enqueued: dict[int, int] = defaultdict(int)
    lag: dict[int, float] = defaultdict(float)

    def report(m: int) -> None:
        emit("MINUTE", {"m": m, "enqueued": enqueued.pop(m, 0), "lag_max_ms": 1000 * lag.pop(m, 0.0)})

    async with App(args.dsn, schema=args.schema, auto_migrate=False) as app:
        async with app.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
        emit("READY")
        t0 = await go()
        reporter = asyncio.create_task(every_window(t0, report))
        stopped = asyncio.create_task(readline())  # EOF: the parent stops the run early
        for k in range(ticks):
            if stopped.done():
                break
            due = t0 + k * args.tick
            if (delay := due - time.time()) > 0:
                await asyncio.sleep(delay)
            target = min(n, round(args.rate * (k + 1) * args.tick))
            if target <= sent:
                continue
            now = time.time()
            m = int((now - t0) // WINDOW)
            lag[m] = max(lag[m], now - due)
            await app.enqueue_many([{"handler": HANDLER, "data": {"i": i, "t": now}} for i in range(sent, target)])
            # Counted in the minute the call returned in: a minute's report (0.5 s after it) has them all.
            enqueued[int((time.time() - t0) // WINDOW)] += target - sent
            sent = target
        reporter.cancel()
        for m in sorted(set(enqueued) | set(lag)):
            report(m)
    emit("DONE", {"enqueued": sent})


# --------------------------------------------------------------------------- the parent


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    ready: bool = False
    eof: bool = False
    minutes: dict[int, dict[str, Any]] = field(default_factory=dict)
    done: dict[str, Any] | None = None

    async def read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            line = raw.decode().rstrip()
            tag, _, rest = line.partition(" ")
            if tag == "READY":
                self.ready = True
            elif tag == "MINUTE":
                d = json.loads(rest)
                self.minutes[d["m"]] = d
            elif tag == "DONE":
                self.done = json.loads(rest)
            else:
                print(f"[{self.name}] {line}", file=sys.stderr)
        self.eof = True

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError, RuntimeError):
            self.proc.stdin.write(line.encode() + b"\n")


async def until(cond: Callable[[], bool], timeout: float, what: str, children: Sequence[Child]) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        for c in children:
            if c.eof and c.done is None:
                raise RuntimeError(f"{c.name} exited ({await c.proc.wait()}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


def reported(m: int, children: Sequence[Child]) -> Callable[[], bool]:
    return lambda: all(m in c.minutes for c in children)


async def spawn(name: str, args: list[str], readers: list[asyncio.Task[None]]) -> Child:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "benchmarks.soak", *args, cwd=ROOT,
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    child = Child(name, proc)
    readers.append(asyncio.create_task(child.read()))
    return child


async def stop_children(children: Sequence[Child]) -> None:
    """Close what is still running: stdin first (a worker drains and exits), then SIGTERM, then SIGKILL."""
    for c in children:
        if c.proc.returncode is None and c.proc.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                c.proc.stdin.close()
    for c in children:
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if c.proc.returncode is not None:
                break
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    c.proc.send_signal(sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(c.proc.wait(), 10.0)


STATS = """
SELECT relname, pg_total_relation_size(relid) AS total, pg_indexes_size(relid) AS indexes,
       n_live_tup, n_dead_tup, n_tup_ins, n_tup_del, autovacuum_count, autoanalyze_count
FROM pg_stat_user_tables WHERE schemaname = $1 AND relname IN ('jobs', 'job_runs')"""


async def table_stats(admin: Conn, schema: str) -> dict[str, dict[str, int]]:
    return {r["relname"]: {k: int(v) for k, v in dict(r).items() if k != "relname"}
            for r in await admin.fetch(STATS, schema)}


async def calibrate(admin: Conn, dsn: str, jobs: int, concurrency: int) -> float:
    """Jobs/s one burst worker process drains (``benchmarks.ours``' drain worker), over ``jobs`` preloaded."""
    schema = f"soak_calibration_{os.getpid()}"
    await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    try:
        async with App(dsn, schema=schema):
            pass  # migrates
        await admin.execute(f"INSERT INTO {schema}.jobs (handler, data) SELECT 'noop', jsonb_build_object('i', g)"
                            " FROM generate_series(1, $1::int) AS g", jobs)
        await admin.execute(f"VACUUM ANALYZE {schema}.jobs")
        args = ["--dsn", dsn, "--schema", schema, "--concurrency", str(concurrency)]
        meter, dones = await drain_processes("benchmarks.ours", args, 1, admin, wait_s=60 + jobs / 200)
        if (claimed := sum(d["claimed"] for d in dones)) != jobs:
            raise RuntimeError(f"calibration: {claimed} jobs claimed of {jobs}")
        return jobs / meter.seconds
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def minute_row(m: int, workers: Sequence[Child], enqueuer: Child, stats: dict[str, dict[str, int]],
               before: dict[str, dict[str, int]], totals: dict[str, int], busy: float) -> dict[str, Any]:
    reports = [w.minutes[m] for w in workers]
    e = enqueuer.minutes.get(m, {"enqueued": 0, "lag_max_ms": 0.0})
    hist = merge([r["hist"] for r in reports])
    runs = sum(r["runs"] for r in reports)
    totals["enqueued"] += e["enqueued"]
    totals["runs"] += runs
    j, h = stats.get("jobs", {}), stats.get("job_runs", {})
    hb = before.get("job_runs", {})
    return {
        "minute": m + 1, "enqueued": e["enqueued"], "runs": runs, "runs_per_s": round(runs / WINDOW, 1),
        "backlog": totals["enqueued"] - totals["runs"],
        "p50_ms": hist_percentile(hist, 50), "p99_ms": hist_percentile(hist, 99),
        "max_ms": max((r["max_ms"] for r in reports), default=None), "enqueue_lag_max_ms": e["lag_max_ms"],
        "jobs_bytes": j.get("total"), "jobs_index_bytes": j.get("indexes"),
        "history_bytes": h.get("total"), "history_index_bytes": h.get("indexes"),
        "jobs_dead": j.get("n_dead_tup"), "history_dead": h.get("n_dead_tup"),
        "jobs_live": j.get("n_live_tup"), "history_live": h.get("n_live_tup"),
        "history_inserted": h.get("n_tup_ins", 0) - hb.get("n_tup_ins", 0),
        "history_pruned": h.get("n_tup_del", 0) - hb.get("n_tup_del", 0),
        "autovacuum_jobs": j.get("autovacuum_count"), "autovacuum_history": h.get("autovacuum_count"),
        "machine_busy_pct": round(busy, 1),
    }


COLUMNS: list[tuple[str, int, Callable[[dict[str, Any]], str]]] = [  # heading, width, format
    ("min", 3, lambda r: f"{r['minute']}"),
    ("enq/s", 7, lambda r: f"{r['enqueued'] / WINDOW:,.0f}"),
    ("runs/s", 7, lambda r: f"{r['runs_per_s']:,.0f}"),
    ("backlog", 7, lambda r: f"{r['backlog']:,}"),
    ("p50 ms", 7, lambda r: _ms(r["p50_ms"])),
    ("p99 ms", 7, lambda r: _ms(r["p99_ms"])),
    ("max ms", 7, lambda r: _ms(r["max_ms"])),
    ("jobs MB (idx)", 14, lambda r: _mb(r["jobs_bytes"], r["jobs_index_bytes"])),
    ("history MB (idx)", 16, lambda r: _mb(r["history_bytes"], r["history_index_bytes"])),
    ("dead jobs", 9, lambda r: f"{r['jobs_dead']:,}"),
    ("dead hist", 9, lambda r: f"{r['history_dead']:,}"),
    ("hist +ins", 9, lambda r: f"{r['history_inserted']:,}"),
    ("hist -del", 9, lambda r: f"{r['history_pruned']:,}"),
    ("autovac j/h", 11, lambda r: f"{r['autovacuum_jobs']}/{r['autovacuum_history']}"),
    ("enq lag ms", 10, lambda r: _ms(r["enqueue_lag_max_ms"])),
    ("busy %", 6, lambda r: f"{r['machine_busy_pct']:.0f}"),
]


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _mb(total: int | None, idx: int | None) -> str:
    return "-" if total is None or idx is None else f"{total / 2**20:.1f} ({idx / 2**20:.1f})"


def header_line() -> str:
    return "  ".join(h.rjust(w) for h, w, _ in COLUMNS)


def row_line(r: dict[str, Any]) -> str:
    return "  ".join(f(r).rjust(w) for _, w, f in COLUMNS)


def count_runs(tallies: Sequence[bytes], n: int) -> int:
    """Distinct job numbers below ``n`` run at least once, over every worker's tally (ORed as big ints)."""
    ints = [int.from_bytes(t[:n].ljust(n, b"\0"), "little") for t in tallies]
    return n - reduce(lambda a, b: a | b, ints, 0).to_bytes(n, "little").count(0) if n else 0


def verdicts(rows: Sequence[dict[str, Any]], enqueued: int, distinct: int, runs: int) -> tuple[list[str], bool]:
    """The goal lines, and whether nothing was lost or run twice."""
    lines = []
    first, last = rows[0], rows[-1]
    if first["p99_ms"] and last["p99_ms"] is not None:
        q = last["p99_ms"] / first["p99_ms"]
        lines.append(f"  p99 latency: minute 1 {_ms(first['p99_ms'])} ms, minute {last['minute']}"
                     f" {_ms(last['p99_ms'])} ms: {q:.2f}x (<= {P99_RATIO}x: {'met' if q <= P99_RATIO else 'NOT met'})")
    ref = rows[min(SIZE_REF_MINUTE, len(rows)) - 1]
    for table, key in (("jobs", "jobs_bytes"), ("job_runs", "history_bytes")):
        a, b = ref[key], last[key]
        judged = len(rows) > SIZE_REF_MINUTE
        met = b <= max(SIZE_RATIO * a, a + SIZE_SLACK)
        verdict = ("met" if met else "NOT met") if judged else f"not judged: needs more than {SIZE_REF_MINUTE} minutes"
        lines.append(f"  {table} size: minute {ref['minute']} {a / 2**20:.1f} MB, minute {last['minute']}"
                     f" {b / 2**20:.1f} MB: {b / a:.2f}x (<= {SIZE_RATIO}x or +1 MiB: {verdict})")
    lost, twice = enqueued - distinct, runs - distinct
    lines.append(f"  lost: {lost:,} of {enqueued:,} enqueued (= 0: {'met' if lost == 0 else 'NOT met'})")
    lines.append(f"  run twice: {twice:,} extra runs ({runs:,} runs of {distinct:,} distinct jobs; = 0:"
                 f" {'met' if twice == 0 else 'NOT met'})")
    return lines, lost == 0 and twice == 0


# --------------------------------------------------------------------------- the plot


def _ticks(top: float) -> list[float]:
    """About five round tick values from 0 to at least ``top``."""
    raw = max(top, 1e-9) / 5
    unit = 10.0 ** math.floor(math.log10(raw))
    step = min(s * unit for s in (1, 2, 5, 10) if s * unit >= raw)
    return [step * i for i in range(math.ceil(top / step) + 1)]


def plot_svg(rows: Sequence[dict[str, Any]], title: str) -> str:
    """Two panels, per minute: p50, p99 and max latency; total and index size of jobs and job_runs.

    ``title`` may have a second line (smaller)."""
    w, ph, left, right, top, gap = 760, 220, 70, 190, 56, 60
    height = top + 2 * ph + gap + 40
    xs: list[int] = [r["minute"] for r in rows]
    xmax = max(max(xs), 2)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif"'
           f' font-size="12">', f'<rect width="{w}" height="{height}" fill="white"/>',
           *(f'<text x="{left}" y="{20 + 16 * i}" font-size="{14 - 2 * min(i, 1)}">{line}</text>'
             for i, line in enumerate(title.split("\n")))]

    def panel(y0: float, label: str, series: list[tuple[str, str, str, list[float | None]]], log: bool) -> None:
        values = [v for *_, vs in series for v in vs if v is not None and (v > 0 or not log)]
        if log:  # p50 and p99 differ by orders of magnitude: decades, from the one below the smallest value
            lo = math.floor(math.log10(min(values, default=1.0)))
            yt = [10.0 ** e for e in range(lo, max(lo + 1, math.ceil(math.log10(max(values, default=1.0)))) + 1)]
        else:
            yt = _ticks(max(values, default=1.0) * 1.05)
        ymin, ymax = yt[0], yt[-1] or 1.0

        def px(x: float) -> float:
            return left + (x - 1) / (xmax - 1) * (w - left - right)

        def py(y: float) -> float:
            if log:
                return y0 + ph - math.log(max(y, ymin) / ymin) / math.log(ymax / ymin) * ph
            return y0 + ph - y / ymax * ph

        out.append(f'<rect x="{left}" y="{y0}" width="{w - left - right}" height="{ph}" fill="none" stroke="#999"/>')
        for t in yt:
            out.append(f'<line x1="{left}" x2="{w - right}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#eee"/>')
            out.append(f'<text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
        for x in range(1, xmax + 1, max(1, xmax // 10)):
            out.append(f'<text x="{px(x):.1f}" y="{y0 + ph + 16}" text-anchor="middle">{x}</text>')
        out.append(f'<text x="16" y="{y0 + ph / 2}" transform="rotate(-90 16 {y0 + ph / 2})"'
                   f' text-anchor="middle">{label}</text>')
        for i, (name, colour, dash, vs) in enumerate(series):
            pts = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in zip(xs, vs, strict=True) if v is not None)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"'
                       f' stroke-dasharray="{dash}"/>')
            for x, v in zip(xs, vs, strict=True):
                if v is not None:
                    out.append(f'<circle cx="{px(x):.1f}" cy="{py(v):.1f}" r="2.5" fill="{colour}"/>')
            ly = y0 + 14 + 18 * i
            out.append(f'<line x1="{w - right + 14}" x2="{w - right + 40}" y1="{ly - 4}" y2="{ly - 4}"'
                       f' stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>')
            out.append(f'<text x="{w - right + 46}" y="{ly}">{name}</text>')

    def mb(key: str) -> list[float | None]:
        return [None if r[key] is None else r[key] / 2**20 for r in rows]

    panel(top, "pickup latency, ms (log)", [("p50", "#1f77b4", "none", [r["p50_ms"] for r in rows]),
                                      ("p99", "#d62728", "none", [r["p99_ms"] for r in rows]),
                                      ("max", "#999999", "4 3", [r["max_ms"] for r in rows])], log=True)
    panel(top + ph + gap, "size, MB", [("job_runs total", "#2ca02c", "none", mb("history_bytes")),
                                       ("job_runs indexes", "#2ca02c", "4 3", mb("history_index_bytes")),
                                       ("jobs total", "#9467bd", "none", mb("jobs_bytes")),
                                       ("jobs indexes", "#9467bd", "4 3", mb("jobs_index_bytes"))], log=False)
    out.append(f'<text x="{left + (w - left - right) / 2}" y="{height - 8}" text-anchor="middle">minute</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- main


async def soak(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="aiojobs_pg_soak_"))
    schema = f"soak_{os.getpid()}"
    children: list[Child] = []
    readers: list[asyncio.Task[None]] = []
    admin: Conn = None
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    try:
        if args.dsn is None:
            # The server runs as a system user of its own when we are root: embedded_dsn opens tmp to it.
            dsn, where = await asyncio.to_thread(embedded_dsn, tmp), f"embedded, in {tmp}"
        else:
            dsn, where = args.dsn, "--dsn"
        dsn = tagged(dsn)
        admin = await asyncpg.connect(dsn)
        settings = {r[0]: r[1] for r in await admin.fetch(
            "SELECT s, current_setting(s) FROM unnest($1::text[]) AS s", SETTINGS)}
        commit = git("rev-parse", "--short", "HEAD") + ("+changes" if git("status", "--porcelain") else "")
        print(f"soak {started}, commit {commit}, {CPUS} CPUs; PostgreSQL {settings['server_version']} ({where}),"
              f" autovacuum {settings['autovacuum']} (naptime {settings['autovacuum_naptime']}, scale factor"
              f" {settings['autovacuum_vacuum_scale_factor']},"
              f" insert {settings['autovacuum_vacuum_insert_scale_factor']}),"
              f" synchronous_commit {settings['synchronous_commit']}, fsync {settings['fsync']}", flush=True)
        if settings["autovacuum"] != "on":
            print("WARNING: autovacuum is off on this server; the soak's goals assume it on", flush=True)

        drain_rate = None
        if args.rate is None:
            drain_rate = await calibrate(admin, dsn, args.calibration_jobs, args.concurrency)
            rate = max(100.0, round(drain_rate / 2, -2))
            print(f"calibration: one worker process drained {args.calibration_jobs:,} jobs at {drain_rate:,.0f}/s;"
                  f" rate {rate:,.0f}/s (half)", flush=True)
        else:
            rate = args.rate
        seconds = WINDOW * args.minutes
        print(f"{args.minutes} min at {rate:,.0f} jobs/s ({round(rate * seconds):,} jobs), {args.workers} worker"
              f" processes of concurrency {args.concurrency}, history and job retention {args.retention:g} s,"
              f" maintenance every {args.maintenance_interval:g} s; latency: handler start - enqueue sent", flush=True)

        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        async with App(dsn, schema=schema):
            pass  # migrates
        common = ["--dsn", dsn, "--schema", schema]
        for k in range(args.workers):
            children.append(await spawn(f"worker {k + 1}", [
                "--role", "worker", *common, "--concurrency", str(args.concurrency), "--retention",
                str(args.retention), "--maintenance-interval", str(args.maintenance_interval),
                "--tally", str(tmp / f"tally_{k}.bin")], readers))
        enqueuer = await spawn("enqueuer", ["--role", "enqueuer", *common, "--rate", str(rate),
                                            "--seconds", str(seconds), "--tick", str(args.tick)], readers)
        children.append(enqueuer)
        workers = children[:-1]
        await until(lambda: all(c.ready for c in children), 60, "the child processes to be ready", children)

        before = await table_stats(admin, schema)
        t0 = time.time() + 0.5
        busy0 = _machine()[0]
        for c in children:
            c.send(f"go {t0!r}")
        print("\n" + header_line(), flush=True)
        rows: list[dict[str, Any]] = []
        totals = {"enqueued": 0, "runs": 0}
        for m in range(args.minutes):
            await asyncio.sleep(max(0.0, t0 + WINDOW * (m + 1) - time.time()))
            stats, busy1 = await table_stats(admin, schema), _machine()[0]
            await until(reported(m, children), 30, f"the reports of minute {m + 1}", children)
            rows.append(minute_row(m, workers, enqueuer, stats, before, totals,
                                   100 * (busy1 - busy0) / (WINDOW * CPUS)))
            before, busy0 = stats, busy1
            print(row_line(rows[-1]), flush=True)

        await until(lambda: enqueuer.done is not None, 60, "the enqueuer's end", children)
        enqueued = int(enqueuer.done["enqueued"]) if enqueuer.done else 0
        t_end = time.monotonic()
        for _ in range(1200):  # up to 120 s for the backlog: completed jobs leave jobs
            if not await admin.fetchval(f"SELECT EXISTS (SELECT FROM {schema}.jobs WHERE status IN"
                                        " ('pending', 'running'))"):
                break
            await asyncio.sleep(0.1)
        drained_s = time.monotonic() - t_end
        for w in workers:
            w.send("stop")
        await until(lambda: all(w.done is not None for w in workers), 120, "the workers' end", children)
        await stop_children(children)
        await asyncio.sleep(1.0)  # the workers' backends flush their statistics as they exit
        final = await table_stats(admin, schema)
        left = {r[0]: r[1] for r in await admin.fetch(f"SELECT status, count(*) FROM {schema}.jobs GROUP BY 1")}

        runs = sum(int(w.done["runs"]) for w in workers if w.done)
        tallies = [(tmp / f"tally_{k}.bin").read_bytes() for k in range(args.workers)]
        distinct = count_runs(tallies, enqueued)
        tail = [w.minutes[m] for w in workers for m in w.minutes if m >= args.minutes]
        tail_runs = sum(t["runs"] for t in tail)
        tail_enqueued = sum(e["enqueued"] for m, e in enqueuer.minutes.items() if m >= args.minutes)
        tail_p99 = hist_percentile(merge([t["hist"] for t in tail]), 99)
        history_written = final.get("job_runs", {}).get("n_tup_ins", 0)

        print(f"\nafter the last minute: {tail_enqueued:,} jobs enqueued (the enqueuer's lag), {tail_runs:,} runs"
              f" (p99 {_ms(tail_p99)} ms), backlog drained {drained_s:.1f} s after the enqueuer's end;"
              f" rows left in jobs: {left or 'none'}")
        per_worker = ", ".join(f"{int(w.done['runs']):,}" for w in workers if w.done)
        print(f"runs counted by the handlers: {runs:,} ({per_worker});"
              f" history rows written (pg_stat n_tup_ins of job_runs): {history_written:,};"
              f" leases rescued: {sum(int(w.done['rescued']) for w in workers if w.done)}")
        if (worst := max(r["enqueue_lag_max_ms"] for r in rows)) > 1000:
            print(f"NOTE: the enqueuer fell up to {worst / 1000:.1f} s behind its schedule ({tail_enqueued:,} jobs"
                  " sent after the last minute): the machine did not sustain the rate (see busy %)")
        lines, correct = verdicts(rows, enqueued, distinct, runs)
        print("goals:", *lines, sep="\n")

        title = (f"aiojobs_pg soak: {rate:,.0f} jobs/s, {args.workers} workers, retention {args.retention:g} s,"
                 f" PostgreSQL {settings['server_version']}, autovacuum {settings['autovacuum']}"
                 f"\n{started}, commit {commit}, {CPUS} CPUs, {args.minutes} min")
        if args.plot:
            args.plot.parent.mkdir(parents=True, exist_ok=True)
            args.plot.write_text(plot_svg(rows, title))
            print(f"plot written to {args.plot}")
        if args.json:
            doc = {"meta": {"started": started, "commit": commit, "server": settings, "where": where,
                            "cpus": CPUS, "python": platform.python_version(), "platform": platform.platform(),
                            "argv": args.argv, "rate": rate, "calibration_drain_per_s": drain_rate,
                            "minutes": args.minutes, "workers": args.workers, "concurrency": args.concurrency,
                            "retention_s": args.retention, "maintenance_interval_s": args.maintenance_interval,
                            "latency": "handler start minus the job's due time (when its enqueue_many call was sent)"},
                   "minutes": rows,
                   "end": {"enqueued": enqueued, "runs": runs, "distinct_jobs_run": distinct,
                           "lost": enqueued - distinct, "extra_runs": runs - distinct,
                           "tail_enqueued": tail_enqueued, "tail_runs": tail_runs, "tail_p99_ms": tail_p99,
                           "drained_s": round(drained_s, 1), "left_in_jobs": left,
                           "history_rows_written": history_written, "workers": [w.done for w in workers]},
                   "goals": [x.strip() for x in lines]}
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(doc, indent=1, default=str) + "\n")
            print(f"figures written to {args.json}")
        return 0 if correct else 1
    finally:
        await stop_children(children)
        for t in readers:
            t.cancel()
        if admin is not None:
            with contextlib.suppress(Exception):
                if args.dsn is not None:
                    await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                await admin.close()
        if args.dsn is None:
            await asyncio.to_thread(stop_embedded, tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=int, default=10, help="how long jobs are enqueued (10)")
    p.add_argument("--rate", type=float, help="jobs/s (default: half of what one worker process drains, measured"
                   " first)")
    p.add_argument("--dsn", help="a server of your own (default: a fresh embedded PostgreSQL in a temporary"
                   " directory); the run works in a schema soak_<pid>, dropped at the end")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "soak.svg", help="the SVG to write (docs/soak.svg)")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the per-minute figures there")
    p.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    p.add_argument("--concurrency", type=int, default=100, help="handlers per worker process (100)")
    p.add_argument("--retention", type=float, default=60.0, help="history and job retention, s (60)")
    p.add_argument("--maintenance-interval", type=float, default=1.0,
                   help="s between the workers' maintenance rounds (1)")
    p.add_argument("--tick", type=float, default=0.01, help="s between the enqueuer's batches (0.01)")
    p.add_argument("--calibration-jobs", type=int, default=100_000, help="jobs drained to measure the rate")
    # A child process's part, set by the parent.
    p.add_argument("--role", choices=["worker", "enqueuer"], help=argparse.SUPPRESS)
    p.add_argument("--schema", help=argparse.SUPPRESS)
    p.add_argument("--tally", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.minutes < 1:
        p.error("--minutes must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.role is not None:
        # The parent decides when a child stops (stdin, then SIGTERM): a Ctrl-C at the terminal is its.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        asyncio.run(worker_child(args) if args.role == "worker" else enqueuer_child(args))
        return 0

    async def run() -> int:
        # SIGTERM cancels the run like Ctrl-C does, so that the children and the server are stopped.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await soak(args)

    try:
        return asyncio.run(run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
