"""Run the benchmarks: ``python -m benchmarks`` or ``python benchmarks/run.py``.

From the repository root.  See ``--help`` and benchmarks/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import json
import os
import platform
import time
import traceback
from collections.abc import Sequence
from typing import Any

import asyncpg

from benchmarks.common import DSN_ENV, BenchConfig, Result, Section, bench_dsn
from benchmarks.report import format_table, format_targets
from benchmarks.sections import all_sections

DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"
FULL_N = 20_000
QUICK_N = 2_000


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="aiojobs_pg benchmarks against a hand-written asyncpg floor.",
    )
    p.add_argument("--quick", action="store_true", help=f"n={QUICK_N:,} jobs instead of {FULL_N:,}")
    p.add_argument("-n", type=int, default=None, help="jobs per throughput measurement")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only sections matching NAME: an impl (floor), a section (drain) or"
        " both (floor.drain); repeatable or comma-separated",
    )
    p.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        metavar="PATH",
        help="where to write the results (default: benchmarks/results.json)",
    )
    p.add_argument("--dsn", default=None, help=f"default: ${DSN_ENV} or the local server")
    p.add_argument(
        "--concurrency",
        default="1,10,50,100",
        help="drain concurrencies, comma-separated (default: 1,10,50,100)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=16,
        help="cap on the connections of one floor drain variant (default: 16)",
    )
    p.add_argument("--latency-n", type=int, default=500, help="jobs in the latency section")
    p.add_argument("--latency-rate", type=float, default=50.0, help="jobs/s the producer aims at")
    p.add_argument(
        "--long",
        action="store_true",
        help="also run the long sections (ours.memory: 1,000,000 jobs, 200,000 with --quick)",
    )
    p.add_argument("--list", action="store_true", help="list the sections and exit")
    return p.parse_args(argv)


def select(sections: list[Section], only: list[str], long: bool = False) -> list[Section]:
    """The sections ``--only`` asks for, grouped by section name (floor before ours).

    Long sections (``Section.long``) are left out unless ``long`` is true.
    """
    patterns = [p for arg in only for p in arg.split(",") if p.strip()]
    chosen = [s for s in sections if (long or not s.long) and (not patterns or any(s.matches(p) for p in patterns))]
    order = {name: i for i, name in reversed(list(enumerate(s.name for s in sections)))}
    return sorted(chosen, key=lambda s: order[s.name])


async def server_meta(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT name, current_setting(name) AS value FROM unnest($1::text[]) AS name",
            [
                "server_version",
                "max_connections",
                "shared_buffers",
                "synchronous_commit",
                "fsync",
                "wal_level",
                "full_page_writes",
                "autovacuum",
            ],
        )
        return {r["name"]: r["value"] for r in rows}
    finally:
        await conn.close()


async def run_sections(cfg: BenchConfig, sections: list[Section]) -> tuple[list[Result], list[str]]:
    results: list[Result] = []
    errors: list[str] = []
    for s in sections:
        print(f"-- {s.qualname}: {s.description}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            got = await s.run(cfg)
        except Exception as exc:  # one failing section must not lose the others
            traceback.print_exc()
            errors.append(f"{s.qualname}: {type(exc).__name__}: {exc}")
            continue
        for r in got:
            extra = "" if r.jobs_per_s is None else f" {r.jobs_per_s:,.0f} jobs/s"
            print(
                f"   {r.impl} {r.section} {r.variant}:{extra}",
                file=sys.stderr,
                flush=True,
            )
        print(f"   ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
        results += got
    return results, errors


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sections = select(all_sections(), args.only, args.long)
    if args.list:
        listed = all_sections()
        width = max(len(s.qualname) for s in listed)
        for s in listed:
            print(f"{s.qualname:{width}} {s.description}{'  (--long only)' if s.long else ''}")
        return 0
    if not sections:
        hint = " (long sections need --long)" if any(s.long for s in select(all_sections(), args.only, True)) else ""
        print(f"no section matches {args.only}{hint}", file=sys.stderr)
        return 2

    cfg = BenchConfig(
        dsn=args.dsn or bench_dsn(),
        n=args.n or (QUICK_N if args.quick else FULL_N),
        drain_concurrency=tuple(int(c) for c in args.concurrency.split(",") if c.strip()),
        max_connections=args.max_connections,
        latency_n=args.latency_n,
        latency_rate=args.latency_rate,
        quick=args.quick,
        long=args.long,
    )

    async def go() -> tuple[dict[str, Any], list[Result], list[str]]:
        meta = await server_meta(cfg.dsn)
        results, errors = await run_sections(cfg, sections)
        return meta, results, errors

    started = time.time()
    server, results, errors = asyncio.run(go())

    print()
    print(format_table(results))
    if targets := format_targets(results):
        print()
        print(targets)
    for e in errors:
        print(f"FAILED {e}")

    doc = {
        "meta": {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "seconds": round(time.time() - started, 1),
            "argv": list(sys.argv[1:] if argv is None else argv),
            "sections": [s.qualname for s in sections],
            "config": {k: v for k, v in vars(cfg).items() if k != "dsn"},
            "server": server,
            "python": platform.python_version(),
            "asyncpg": asyncpg.__version__,
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "results": [r.to_json() for r in results],
        "errors": errors,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nresults written to {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
