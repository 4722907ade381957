"""``python -m benchmarks``: aiojobs_pg ("ours") against the floor, section by section; see README.md.

Each variant runs the floor's measurement, then ours', so that the two are taken a few seconds
apart. The run fails (exit 1) if a measurement raises or loses a job.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg

from benchmarks import floor, ours
from benchmarks.common import CPUS, Config, Result, ServerCpu, bench_dsn, commit, server_settings, tagged

IMPLS: dict[str, ModuleType] = {"floor": floor, "ours": ours}
try:  # a peer, in the optional `bench` extra: without it, its rows are left out
    from benchmarks import pgqueuer_peer
    IMPLS["pgqueuer"] = pgqueuer_peer
except ImportError:
    pass
PEERS = ("floor", "ours", "pgqueuer")  # the implementations of the sections every one of them can do
SETTINGS = ["server_version", "shared_buffers", "synchronous_commit", "fsync", "autovacuum", "max_connections"]
# Targets of the performance issue: ours/floor of a figure, and whether higher is better. The single
# enqueue's 0.90x was retired on 2026-12-06 (docs/performance.md): its row is read beside the others.
TARGETS = [("enqueue", "batch", "jobs/s", 0.50, True),
           ("drain", "p1", "jobs/s", 0.70, True), ("drain", "p1", "server µs/job", 1.5, False),
           ("latency", None, "p50 ms", 1.3, False), ("latency", None, "p99 ms", 1.3, False)]


@dataclass(frozen=True)
class Case:
    section: str
    variant: str
    run: Callable[[ModuleType, Config], Awaitable[Result]]
    impls: tuple[str, ...] = ("floor", "ours")
    long: bool = False


def plan(cfg: Config) -> list[Case]:
    def drain(k: int) -> Case:
        return Case("drain", f"p{k}", lambda m, c: m.drain(c, k), impls=PEERS)
    return [
        Case("enqueue", "single", lambda m, c: m.enqueue(c, batch=False), impls=PEERS),
        Case("enqueue", "batch", lambda m, c: m.enqueue(c, batch=True), impls=PEERS),
        drain(1), drain(2), drain(4),
        Case("drain", "p1 limited", lambda m, c: m.drain(c, 1, limited=True), impls=("ours",)),
        # what a worker started with the defaults does: concurrency 10, so claims and flushes of ten
        Case("drain", "p1 c10", lambda m, c: m.drain(c, 1, concurrency=10), impls=("ours",)),
        Case("latency", f"{cfg.latency_rate:g}/s",
             lambda m, c: m.stream(c, "latency", c.latency_rate, c.latency_seconds)),
        Case("soak", f"{cfg.soak_rate:g}/s", lambda m, c: m.stream(c, "soak", c.soak_rate, c.soak_seconds)),
        Case("deferred", "0.2-2s", lambda m, c: m.deferred(c), impls=("ours",)),
        Case("overview", f"{cfg.overview_runs // 1000}k runs", lambda m, c: m.overview(c), impls=("ours",)),
        Case("memory", f"{cfg.memory_jobs // 1000}k", lambda m, c: m.memory(c), impls=("ours",), long=True),
    ]


def selected(cases: list[Case], only: list[str], long: bool) -> list[tuple[Case, str]]:
    """(case, impl) pairs to run: ``--only`` names an impl (ours), a section (drain) or both (ours.drain)."""
    pats = {p.strip().lower() for arg in only for p in arg.split(",") if p.strip()}
    return [(c, i) for c in cases for i in c.impls if (long or not c.long)
            and (not pats or pats & {i, c.section, f"{i}.{c.section}"})]


# --------------------------------------------------------------------------- report

FIGURES: dict[str, Callable[[Result], float | None]] = {
    "jobs/s": lambda r: r.jobs_per_s,
    "server µs/job": lambda r: r.us_per_job(r.pg_cpu_s),
    "client µs/job": lambda r: r.us_per_job(r.client_cpu_s),
    "p50 ms": lambda r: r.p50_ms,
    "p99 ms": lambda r: r.p99_ms,
}


def _fmt(x: float | None, title: str = "") -> str:
    if x is None or math.isnan(x):
        return "-"
    return f"{x:,.0f}" if title == "jobs/s" else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def ratio(a: Result | None, b: Result | None, title: str) -> float | None:
    x, y = (None if r is None else FIGURES[title](r) for r in (a, b))
    return x / y if x is not None and y and not math.isnan(x) and not math.isnan(y) else None


def table(results: list[Result]) -> str:
    """One row per (section, variant): each figure for the floor, then ours and any peer that ran, each with
    its ratio to the floor."""
    by = {(r.impl, r.section, r.variant): r for r in results}
    keys = list(dict.fromkeys((r.section, r.variant) for r in results))
    others = ["ours", *(i for i in IMPLS if i not in ("floor", "ours") and any(r.impl == i for r in results))]
    # a peer's columns only for the figures it has (none has latencies but ours)
    cols = {t: [i for i in others if i == "ours" or any(get(r) is not None for r in results if r.impl == i)]
            for t, get in FIGURES.items()}
    head1, head2, rows = ["", ""], ["section", "variant"], []
    for title in FIGURES:
        head1 += [title] + [""] * 2 * len(cols[title])
        head2 += ["floor", *(c for i in cols[title] for c in (i, f"{i}/floor"))]
    for section, variant in keys:
        f = by.get(("floor", section, variant))
        row = [section, variant]
        for title, get in FIGURES.items():
            row.append(_fmt(None if f is None else get(f), title))
            for i in cols[title]:
                o, q = by.get((i, section, variant)), ratio(by.get((i, section, variant)), f, title)
                row += [_fmt(None if o is None else get(o), title), "-" if q is None else f"{q:.2f}x"]
        rows.append(row)
    widths = [max(len(line[i]) for line in [head1, head2, *rows]) for i in range(len(head2))]

    def line(cells: list[str]) -> str:
        cols = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in cols).rstrip()

    out = [line(head1), line(head2), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]
    for r in results:
        out += [f"[{r.impl} {r.section} {r.variant}] {n}" for n in r.notes]
        out += [f"[{r.impl} {r.section} {r.variant}] ERROR {e}" for e in r.errors]
    for r in results:
        if samples := r.extra.get("samples"):
            cols = list(samples[0])
            out += ["", f"[{r.impl} {r.section} {r.variant}] samples:", "  ".join(f"{c:>9}" for c in cols)]
            out += ["  ".join(f"{s.get(c, ''):>9}" for c in cols) for s in samples]
    return "\n".join(out)


def targets(results: list[Result]) -> list[str]:
    by = {(r.impl, r.section, r.variant): r for r in results}
    lines = []
    for section, variant, title, limit, higher in TARGETS:
        for (impl, s, v), o in by.items():
            if (impl == "ours" and s == section and variant in (None, v)
                    and (q := ratio(o, by.get(("floor", s, v)), title)) is not None):
                met = q >= limit if higher else q <= limit
                lines.append(f"  {s} {v} {title}: {q:.2f}x ({'>=' if higher else '<='} {limit:.2f}x:"
                             f" {'met' if met else 'NOT met'})")
    return lines


# --------------------------------------------------------------------------- main


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a smoke run for CI: n=2,000, latency and soak 4 s, overview over 20,000 runs"
                   " (with --long: memory over 200,000 jobs)")
    p.add_argument("--long", action="store_true", help="also the memory run (1,000,000 jobs)")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="floor, ours, pgqueuer, a section (enqueue, drain, latency, soak, deferred, overview, memory)"
                   " or ours.drain; repeatable")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the results and the run's metadata there")
    p.add_argument("--dsn", default=None, help="default: $AIOJOBS_PG_BENCH_DSN, else the local test server")
    p.add_argument("-n", type=int, help="jobs enqueued one by one (20,000; --quick 2,000); ten times as many"
                   " are enqueued in batches and drained")
    p.add_argument("--concurrency", type=int, default=100, help="ours: handlers per drain worker process")
    p.add_argument("--latency-rate", type=float, default=50.0)
    p.add_argument("--soak-rate", type=float, default=500.0)
    p.add_argument("--soak-seconds", type=float, help="30; --quick 4")
    p.add_argument("--list", action="store_true", help="list what would run, and exit")
    return p.parse_args(argv)


async def _run(cfg: Config, todo: list[tuple[Case, str]]) -> tuple[dict[str, str], list[Result], list[str]]:
    conn = await asyncpg.connect(cfg.dsn)
    try:
        settings = await server_settings(conn, SETTINGS)
    finally:
        await conn.close()
    results: list[Result] = []
    errors: list[str] = []
    for case, impl in todo:
        name = f"{impl} {case.section} {case.variant}"
        t0 = time.perf_counter()
        try:
            res = await case.run(IMPLS[impl], cfg)
        except Exception as exc:  # one failing measurement must not lose the others
            traceback.print_exc()
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        results.append(res)
        errors += [f"{name}: {e}" for e in res.errors]
        figure = f"p99 {_fmt(res.p99_ms)} ms" if res.p99_ms is not None else f"{_fmt(res.jobs_per_s, 'jobs/s')} jobs/s"
        print(f"  {name}: {figure} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
    return settings, results, errors


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["soak"]:  # the long soak, a command of its own (benchmarks/soak.py)
        from benchmarks import soak
        return soak.main(argv[1:])
    args = parse(argv)
    quick = args.quick
    n = args.n or (2_000 if quick else 20_000)
    cfg = Config(dsn=tagged(args.dsn or bench_dsn()), n=n, bulk=10 * n,
                 concurrency=args.concurrency, latency_rate=args.latency_rate,
                 latency_seconds=4.0 if quick else 10.0, soak_rate=args.soak_rate,
                 soak_seconds=args.soak_seconds or (4.0 if quick else 30.0),
                 memory_jobs=200_000 if quick else 1_000_000, overview_runs=20_000 if quick else 1_000_000)
    todo = selected(plan(cfg), args.only, args.long)
    if any(i not in IMPLS for _, i in todo):
        print("pgqueuer rows skipped: pgqueuer is not installed (pip install -e '.[bench]')")
        todo = [(c, i) for c, i in todo if i in IMPLS]
    if args.list or not todo:
        for case, impl in selected(plan(cfg), args.only, True):
            print(f"{impl}.{case.section} {case.variant}{'  (--long)' if case.long else ''}")
        if not todo:
            print(f"nothing to run for --only {','.join(args.only)} (the memory run needs --long)", file=sys.stderr)
        return 0 if args.list else 2
    started, t0 = time.strftime("%Y-%m-%d %H:%M:%S %Z"), time.perf_counter()
    settings, results, errors = asyncio.run(_run(cfg, todo))
    print(f"\n{started}, commit {commit()}, {CPUS} CPUs, PostgreSQL {settings.get('server_version', '?')},"
          f" n={cfg.n:,} (batches and drains {cfg.bulk:,}), {time.perf_counter() - t0:.0f} s")
    if ServerCpu.note:
        print(ServerCpu.note)
    print(table(results))
    if lines := targets(results):
        print("\ntargets, ours/floor:", *lines, sep="\n")
    for e in errors:
        print(f"FAILED {e}")
    if args.json:
        meta = {"started": started, "seconds": round(time.perf_counter() - t0, 1), "commit": commit(),
                "argv": list(sys.argv[1:] if argv is None else argv), "config": {**asdict(cfg), "dsn": None},
                "server": settings, "python": platform.python_version(), "asyncpg": asyncpg.__version__,
                "platform": platform.platform(), "cpus": CPUS}
        doc: dict[str, Any] = {"meta": meta, "results": [r.to_json() for r in results], "errors": errors}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1, default=str) + "\n")
        print(f"results written to {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
