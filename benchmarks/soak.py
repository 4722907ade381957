"""``python -m benchmarks soak``: minutes of a steady stream, with pruning and autovacuum at work.

One enqueuer process adds jobs at a steady rate (by default half of what one worker process drains,
measured first) while worker processes run them with a no-op handler; retention is short, so pruning
runs all along. Each minute: pickup latency, throughput, sizes and dead tuples of jobs and history.
At the end: jobs enqueued against runs, the goals, a plot. See benchmarks/README.md ("Soak").

Pickup latency is the handler's start minus the moment the job's insert was sent (stamped into its
data; it is due from its insert). Each worker process keeps a histogram per minute (1% buckets) and
counts runs per job number (a byte each, written to a file when it stops), so that pruning hides no
run. The child processes are ``python -m benchmarks.soak --role worker|enqueuer ...``.
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
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from aiojobs_pg import App
from aiojobs_pg.embedded import embedded_dsn, stop_embedded
from benchmarks import common, ours
from benchmarks.common import CPUS, Child, Conn, emit, machine_cpu, readline, ready, until

WINDOW = 60.0
"""Seconds per reported window (a minute)."""
SCALE = 100
"""Histogram buckets per factor e of latency: each bucket is 1% wide."""
SETTINGS = ["server_version", "autovacuum", "autovacuum_naptime", "autovacuum_vacuum_scale_factor",
            "autovacuum_vacuum_insert_scale_factor", "synchronous_commit", "fsync", "shared_buffers"]
P99_RATIO, SIZE_RATIO, SIZE_SLACK, SIZE_REF_MINUTE = 1.5, 1.2, 2**20, 3
"""Goals: the last minute's p99 within 1.5x the first's; each table's size within 1.2x (or 1 MiB: a table of a
few pages flips by more than 20%) of its size at minute 3."""


def hist_percentile(hist: dict[int, int], q: float) -> float | None:
    """The ``q``-th percentile (nearest rank) of a histogram, in ms: its bucket's geometric middle."""
    rank, seen = max(1, math.ceil(sum(hist.values()) * q / 100)), 0
    for k in sorted(hist):
        if (seen := seen + hist[k]) >= rank:
            return math.exp((k + 0.5) / SCALE) / 1000
    return None


def merge(hists: Sequence[dict[Any, int]]) -> dict[int, int]:
    out: dict[int, int] = defaultdict(int)
    for h in hists:
        for k, n in h.items():
            out[int(k)] += n  # keys are strings after JSON
    return dict(out)


# --------------------------------------------------------------------------- child processes
# The common protocol (benchmarks/common.py), with "go <t0>" (the common start, epoch seconds) and a
# "MINUTE {json}" half a second after each window ends. A worker runs until "stop" or EOF on stdin.


async def every_window(t0: float, report: Callable[[int], None]) -> None:
    m = 0
    while True:
        await asyncio.sleep(max(0.0, t0 + WINDOW * (m + 1) + 0.5 - time.time()))
        report(m)
        m += 1


async def worker_child(args: argparse.Namespace) -> None:
    t0 = math.inf
    seen = bytearray()  # runs per job number, capped at 255
    hists: dict[int, dict[int, int]] = defaultdict(dict)
    slowest: dict[int, float] = defaultdict(float)

    async def soak(data: Any) -> None:
        now, i = time.time(), data["i"]
        if i >= len(seen):
            seen.extend(bytes(i + 65536 - len(seen)))
        seen[i] = min(255, seen[i] + 1)
        late, m = now - data["t"], int((now - t0) // WINDOW)
        k = int(math.log(max(late * 1e6, 1.0)) * SCALE)
        hists[m][k] = hists[m].get(k, 0) + 1
        slowest[m] = max(slowest[m], late)

    def report(m: int) -> None:
        h = hists.pop(m, {})
        emit("MINUTE", {"m": m, "runs": sum(h.values()), "hist": h, "max_ms": 1000 * slowest.pop(m, 0.0)})

    app = App(args.dsn, schema=args.schema, auto_migrate=False, history_retention=args.retention,
              job_retention=args.retention, maintenance_interval=args.maintenance_interval)
    app.register("soak", soak)
    async with app, app.worker(concurrency=args.concurrency) as worker:
        await ours.listening(worker)
        t0 = float(await ready())
        reporter = asyncio.create_task(every_window(t0, report))
        await readline()  # "stop", or EOF
        reporter.cancel()
        claimed, rescued = worker.producer.claimed, worker.maintenance.rescued
    for m in sorted(hists):  # the worker has drained
        report(m)
    await asyncio.to_thread(Path(args.tally).write_bytes, seen)
    emit("DONE", {"runs": sum(seen), "claimed": claimed, "rescued": rescued})


async def enqueuer_child(args: argparse.Namespace) -> None:
    """Every ``tick``, one ``enqueue_many`` of the jobs due by the next tick. Ticks are absolute deadlines
    from t0, so after a slow call the next one catches up and the rate does not drift. A minute reports
    the jobs whose insert returned in it and how late its calls started against their tick (the lag)."""
    sent, n = 0, round(args.rate * args.seconds)
    enqueued: dict[int, int] = defaultdict(int)
    lag: dict[int, float] = defaultdict(float)

    def report(m: int) -> None:
        emit("MINUTE", {"m": m, "enqueued": enqueued.pop(m, 0), "lag_max_ms": 1000 * lag.pop(m, 0.0)})

    async with App(args.dsn, schema=args.schema, auto_migrate=False) as app:
        async with app.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
        t0 = float(await ready())
        reporter = asyncio.create_task(every_window(t0, report))
        stopped = asyncio.create_task(readline())  # EOF: the parent stops the run early
        for k in range(math.ceil(args.seconds / args.tick)):
            if stopped.done():
                break
            if (delay := t0 + k * args.tick - time.time()) > 0:
                await asyncio.sleep(delay)
            if (target := min(n, round(args.rate * (k + 1) * args.tick))) <= sent:
                continue
            now = time.time()
            m = int((now - t0) // WINDOW)
            lag[m] = max(lag[m], now - t0 - k * args.tick)
            await app.enqueue_many([{"handler": "soak", "data": {"i": i, "t": now}} for i in range(sent, target)])
            enqueued[int((time.time() - t0) // WINDOW)] += target - sent
            sent = target
        reporter.cancel()
        for m in sorted(set(enqueued) | set(lag)):
            report(m)
    emit("DONE", {"enqueued": sent})


# --------------------------------------------------------------------------- the figures

STATS = """SELECT relname, pg_total_relation_size(relid) AS total, pg_indexes_size(relid) AS indexes,
       n_live_tup, n_dead_tup, n_tup_ins, n_tup_del, autovacuum_count
FROM pg_stat_user_tables WHERE schemaname = $1 AND relname IN ('jobs', 'job_runs')"""


async def table_stats(admin: Conn, schema: str) -> dict[str, dict[str, int]]:
    return {r["relname"]: {k: int(v) for k, v in dict(r).items() if k != "relname"}
            for r in await admin.fetch(STATS, schema)}


def minute_row(m: int, workers: Sequence[Child], enqueuer: Child, stats: dict[str, dict[str, int]],
               before: dict[str, dict[str, int]], totals: dict[str, int], busy: float) -> dict[str, Any]:
    reports = [w.minutes[m] for w in workers]
    e = enqueuer.minutes.get(m, {"enqueued": 0, "lag_max_ms": 0.0})
    hist, runs = merge([r["hist"] for r in reports]), sum(r["runs"] for r in reports)
    totals["enqueued"] += e["enqueued"]
    totals["runs"] += runs
    j, h, hb = stats.get("jobs", {}), stats.get("job_runs", {}), before.get("job_runs", {})
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
        "machine_busy_pct": round(100 * busy / (WINDOW * CPUS), 1),
    }


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _mb(total: int | None, idx: int | None) -> str:
    return "-" if total is None or idx is None else f"{total / 2**20:.1f} ({idx / 2**20:.1f})"


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


def row_line(r: dict[str, Any] | None) -> str:
    return "  ".join((h if r is None else f(r)).rjust(w) for h, w, f in COLUMNS)


def count_runs(tallies: Sequence[bytes], n: int) -> int:
    """Distinct job numbers below ``n`` run at least once, over every worker's tally (ORed as big ints)."""
    union = 0
    for t in tallies:
        union |= int.from_bytes(t[:n].ljust(n, b"\0"), "little")
    return n - union.to_bytes(n, "little").count(0) if n else 0


def verdicts(rows: Sequence[dict[str, Any]], enqueued: int, distinct: int, runs: int) -> tuple[list[str], bool]:
    """The goal lines, and whether nothing was lost or run twice."""
    lines = []
    first, last, ref = rows[0], rows[-1], rows[min(SIZE_REF_MINUTE, len(rows)) - 1]
    if first["p99_ms"] and last["p99_ms"] is not None:
        q = last["p99_ms"] / first["p99_ms"]
        lines.append(f"  p99 latency: minute 1 {_ms(first['p99_ms'])} ms, minute {last['minute']}"
                     f" {_ms(last['p99_ms'])} ms: {q:.2f}x (<= {P99_RATIO}x: {'met' if q <= P99_RATIO else 'NOT met'})")
    for table, key in (("jobs", "jobs_bytes"), ("job_runs", "history_bytes")):
        a, b = ref[key], last[key]
        verdict = (("met" if b <= max(SIZE_RATIO * a, a + SIZE_SLACK) else "NOT met") if len(rows) > SIZE_REF_MINUTE
                   else f"not judged: needs more than {SIZE_REF_MINUTE} minutes")
        lines.append(f"  {table} size: minute {ref['minute']} {a / 2**20:.1f} MB, minute {last['minute']}"
                     f" {b / 2**20:.1f} MB: {b / a:.2f}x (<= {SIZE_RATIO}x or +1 MiB: {verdict})")
    lost, twice = enqueued - distinct, runs - distinct
    lines.append(f"  lost: {lost:,} of {enqueued:,} enqueued (= 0: {'met' if lost == 0 else 'NOT met'})")
    lines.append(f"  run twice: {twice:,} extra runs ({runs:,} runs of {distinct:,} distinct jobs; = 0:"
                 f" {'met' if twice == 0 else 'NOT met'})")
    return lines, lost == 0 and twice == 0


def plot_svg(rows: Sequence[dict[str, Any]], title: str) -> str:
    """Two panels per minute: p50, p99 and max latency (log scale); total and index size of jobs and job_runs."""
    w, ph, left, right, top, gap = 760, 220, 70, 190, 56, 60
    height, xs = top + 2 * ph + gap + 40, [r["minute"] for r in rows]
    xmax = max(*xs, 2)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif"'
           f' font-size="12">', f'<rect width="{w}" height="{height}" fill="white"/>',
           *(f'<text x="{left}" y="{20 + 16 * i}" font-size="{14 - 2 * min(i, 1)}">{line}</text>'
             for i, line in enumerate(title.split("\n")))]

    def panel(y0: float, label: str, series: list[tuple[str, str, str, list[float | None]]], log: bool) -> None:
        values = [v for *_, vs in series for v in vs if v is not None and (v > 0 or not log)]
        if log:  # decades, from the one below the smallest value
            lo = math.floor(math.log10(min(values, default=1.0)))
            yt = [10.0 ** e for e in range(lo, max(lo + 1, math.ceil(math.log10(max(values, default=1.0)))) + 1)]
        else:  # about five round steps from 0
            raw = max(max(values, default=1.0) * 1.05, 1e-9) / 5
            step = min(s * 10.0 ** math.floor(math.log10(raw)) for s in (1, 2, 5, 10)
                       if s * 10.0 ** math.floor(math.log10(raw)) >= raw)
            yt = [step * i for i in range(math.ceil(5 * raw / step) + 1)]
        ymin, ymax = yt[0], yt[-1] or 1.0

        def px(x: float) -> float:
            return left + (x - 1) / (xmax - 1) * (w - left - right)

        def py(y: float) -> float:
            frac = math.log(max(y, ymin) / ymin) / math.log(ymax / ymin) if log else y / ymax
            return y0 + ph - frac * ph

        out.append(f'<rect x="{left}" y="{y0}" width="{w - left - right}" height="{ph}" fill="none" stroke="#999"/>')
        for t in yt:
            out.append(f'<line x1="{left}" x2="{w - right}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#eee"/>'
                       f'<text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
        out.extend(f'<text x="{px(x):.1f}" y="{y0 + ph + 16}" text-anchor="middle">{x}</text>'
                   for x in range(1, xmax + 1, max(1, xmax // 10)))
        out.append(f'<text x="16" y="{y0 + ph / 2}" transform="rotate(-90 16 {y0 + ph / 2})"'
                   f' text-anchor="middle">{label}</text>')
        for i, (name, colour, dash, vs) in enumerate(series):
            pts = [(px(x), py(v)) for x, v in zip(xs, vs, strict=True) if v is not None]
            out.append(f'<polyline points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in pts)}" fill="none"'
                       f' stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>')
            out.extend(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{colour}"/>' for a, b in pts)
            ly = y0 + 14 + 18 * i
            out.append(f'<line x1="{w - right + 14}" x2="{w - right + 40}" y1="{ly - 4}" y2="{ly - 4}"'
                       f' stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>'
                       f'<text x="{w - right + 46}" y="{ly}">{name}</text>')

    def mb(key: str) -> list[float | None]:
        return [None if r[key] is None else r[key] / 2**20 for r in rows]

    panel(top, "pickup latency, ms (log)", [("p50", "#1f77b4", "none", [r["p50_ms"] for r in rows]),
                                             ("p99", "#d62728", "none", [r["p99_ms"] for r in rows]),
                                             ("max", "#999999", "4 3", [r["max_ms"] for r in rows])], log=True)
    panel(top + ph + gap, "size, MB", [("job_runs total", "#2ca02c", "none", mb("history_bytes")),
                                       ("job_runs indexes", "#2ca02c", "4 3", mb("history_index_bytes")),
                                       ("jobs total", "#9467bd", "none", mb("jobs_bytes")),
                                       ("jobs indexes", "#9467bd", "4 3", mb("jobs_index_bytes"))], log=False)
    out += [f'<text x="{left + (w - left - right) / 2}" y="{height - 8}" text-anchor="middle">minute</text>', "</svg>"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the parent


async def soak(args: argparse.Namespace) -> int:
    tmp, schema = Path(tempfile.mkdtemp(prefix="aiojobs_pg_soak_")), f"soak_{os.getpid()}"
    children: list[Child] = []
    admin: Conn = None
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    try:
        # The server runs as a system user of its own when we are root: embedded_dsn opens tmp to it.
        dsn, where = (args.dsn, "--dsn") if args.dsn else (await asyncio.to_thread(embedded_dsn, tmp), f"in {tmp}")
        admin = await asyncpg.connect(dsn := common.tagged(dsn))
        settings, tree = await common.server_settings(admin, SETTINGS), common.commit()
        print(f"soak {started}, commit {tree}, {CPUS} CPUs; PostgreSQL ({where}) "
              + ", ".join(f"{k} {v}" for k, v in settings.items()), flush=True)
        if settings["autovacuum"] != "on":
            print("WARNING: autovacuum is off on this server; the soak's goals assume it on", flush=True)
        rate, drain_rate = args.rate, None
        if rate is None:  # one burst worker process over preloaded jobs: the suite's drain p1
            res = await ours.drain(common.Config(dsn, bulk=args.calibration_jobs, concurrency=args.concurrency), 1)
            if res.errors or not res.jobs_per_s:
                raise RuntimeError(f"calibration: {'; '.join(res.errors)}")
            drain_rate, rate = res.jobs_per_s, max(100.0, round(res.jobs_per_s / 2, -2))
            print(f"calibration: one worker process drained {args.calibration_jobs:,} jobs at {drain_rate:,.0f}/s;"
                  f" rate {rate:,.0f}/s (half)", flush=True)
        seconds = WINDOW * args.minutes
        print(f"{args.minutes} min at {rate:,.0f} jobs/s ({round(rate * seconds):,} jobs), {args.workers} worker"
              f" processes of concurrency {args.concurrency}, history and job retention {args.retention:g} s,"
              f" maintenance every {args.maintenance_interval:g} s; latency: handler start - enqueue sent", flush=True)

        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        async with App(dsn, schema=schema):
            pass  # migrates
        base = ["benchmarks.soak", "--dsn", dsn, "--schema", schema]
        for k in range(args.workers):
            children.append(await Child.spawn(
                f"worker {k + 1}", *base, "--role", "worker", "--concurrency", str(args.concurrency), "--retention",
                str(args.retention), "--maintenance-interval", str(args.maintenance_interval),
                "--tally", str(tmp / f"tally_{k}.bin")))
        workers, enqueuer = [*children], await Child.spawn(
            "enqueuer", *base, "--role", "enqueuer", "--rate", str(rate), "--seconds", str(seconds),
            "--tick", str(args.tick))
        children.append(enqueuer)
        await until(children, lambda: all(c.ready for c in children), 60, "the child processes to be ready")

        before, t0, busy0 = await table_stats(admin, schema), time.time() + 0.5, machine_cpu()[0]
        for c in children:
            c.send(f"go {t0!r}")
        print("\n" + row_line(None), flush=True)
        rows: list[dict[str, Any]] = []
        totals = {"enqueued": 0, "runs": 0}
        for m in range(args.minutes):
            await asyncio.sleep(max(0.0, t0 + WINDOW * (m + 1) - time.time()))
            stats, busy1 = await table_stats(admin, schema), machine_cpu()[0]
            await until(children, lambda m=m: all(m in c.minutes for c in children), 30, f"minute {m + 1}'s reports")
            rows.append(minute_row(m, workers, enqueuer, stats, before, totals, busy1 - busy0))
            before, busy0 = stats, busy1
            print(row_line(rows[-1]), flush=True)

        await until(children, lambda: enqueuer.done is not None, 60, "the enqueuer's end")
        enqueued, t_end = int(enqueuer.done["enqueued"]) if enqueuer.done else 0, time.monotonic()
        for _ in range(1200):  # up to 120 s for the backlog: completed jobs leave jobs
            if not await admin.fetchval(f"SELECT EXISTS (SELECT FROM {schema}.jobs WHERE status IN"
                                        " ('pending', 'running'))"):
                break
            await asyncio.sleep(0.1)
        drained_s = time.monotonic() - t_end
        for w in workers:
            w.send("stop")
        await until(children, lambda: all(w.done is not None for w in workers), 120, "the workers' end")
        await asyncio.gather(*(c.stop() for c in children))
        await asyncio.sleep(1.0)  # the workers' backends flush their statistics as they exit
        written = (await table_stats(admin, schema)).get("job_runs", {}).get("n_tup_ins", 0)
        left = {r[0]: r[1] for r in await admin.fetch(f"SELECT status, count(*) FROM {schema}.jobs GROUP BY 1")}

        dones = [w.done for w in workers if w.done]
        runs = sum(int(d["runs"]) for d in dones)
        distinct = count_runs([(tmp / f"tally_{k}.bin").read_bytes() for k in range(args.workers)], enqueued)
        tail = [w.minutes[m] for w in workers for m in w.minutes if m >= args.minutes]
        tail_enqueued = sum(e["enqueued"] for m, e in enqueuer.minutes.items() if m >= args.minutes)
        tail_p99 = hist_percentile(merge([t["hist"] for t in tail]), 99)
        print(f"\nafter the last minute: {tail_enqueued:,} jobs enqueued (the enqueuer's lag),"
              f" {sum(t['runs'] for t in tail):,} runs (p99 {_ms(tail_p99)} ms), backlog drained {drained_s:.1f} s"
              f" after the enqueuer's end; rows left in jobs: {left or 'none'}")
        print(f"runs counted by the handlers: {runs:,} ({', '.join(format(d['runs'], ',') for d in dones)});"
              f" history rows written (pg_stat n_tup_ins of job_runs): {written:,};"
              f" leases rescued: {sum(int(d['rescued']) for d in dones)}")
        if (worst := max(r["enqueue_lag_max_ms"] for r in rows)) > 1000:
            print(f"NOTE: the enqueuer fell up to {worst / 1000:.1f} s behind its schedule ({tail_enqueued:,} jobs"
                  " sent after the last minute): the machine did not sustain the rate (see busy %)")
        lines, correct = verdicts(rows, enqueued, distinct, runs)
        print("goals:", *lines, sep="\n")
        if args.plot:
            args.plot.parent.mkdir(parents=True, exist_ok=True)
            args.plot.write_text(plot_svg(rows, (
                f"aiojobs_pg soak: {rate:,.0f} jobs/s, {args.workers} workers, retention {args.retention:g} s,"
                f" PostgreSQL {settings['server_version']}, autovacuum {settings['autovacuum']}"
                f"\n{started}, commit {tree}, {CPUS} CPUs, {args.minutes} min")))
            print(f"plot written to {args.plot}")
        if args.json:
            meta = {"started": started, "commit": tree, "server": settings, "where": where, "cpus": CPUS,
                    "python": platform.python_version(), "rate": rate, "calibration_drain_per_s": drain_rate,
                    "options": {k: str(v) for k, v in vars(args).items()}}
            end = {"enqueued": enqueued, "runs": runs, "distinct_jobs_run": distinct, "tail_p99_ms": tail_p99,
                   "drained_s": round(drained_s, 1), "left_in_jobs": left, "history_rows_written": written,
                   "workers": dones, "goals": [x.strip() for x in lines]}
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"meta": meta, "minutes": rows, "end": end}, indent=1, default=str))
            print(f"figures written to {args.json}")
        return 0 if correct else 1
    finally:
        await asyncio.gather(*(c.stop() for c in children))
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
    p.add_argument("--plot", type=Path, default=common.ROOT / "docs" / "soak.svg", help="the SVG (docs/soak.svg)")
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
