"""What a limit costs when it never binds: ``python -m benchmarks.limits`` (docs/limits.md, "Cost").

The drain of ``benchmarks.ours`` (``bulk`` no-op jobs preloaded, then drained by burst worker processes
of concurrency 100), in turns, under:

- ``none``: no limit (the plain claim: what the default drain measures);
- ``queue-conc``: ``set_queue("default", concurrency_limit=1_000_000)``;
- ``queue-conc+rate``: that and ``rate_limit="2000000000/1s"``: each claim counts the starts of the last
  second, which the drain makes by the ten thousand;
- ``handler-conc``: ``@app.handler(concurrency_limit=1_000_000)`` on the no-op handler.

Usage: ``python -m benchmarks.limits [--rounds 3] [-n 200000] [--processes 1] [--dsn DSN]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from aiojobs_pg import App
from benchmarks import ours
from benchmarks.common import Result, bench_dsn, done, drain_processes, ready, tagged

VARIANTS = ["none", "queue-conc", "queue-conc+rate", "handler-conc"]
HIGH = 1_000_000


async def drain(dsn: str, variant: str, n: int, processes: int, concurrency: int) -> Result:
    async with ours._fresh(dsn) as (app, admin):
        await ours._preload(admin, n)
        if variant == "queue-conc":
            await app.set_queue("default", concurrency_limit=HIGH)
        elif variant == "queue-conc+rate":
            await app.set_queue("default", concurrency_limit=HIGH, rate_limit="2000000000/1s")
        args = ["child", "--dsn", dsn, "--schema", ours.SCHEMA, "--concurrency", str(concurrency)]
        if variant == "handler-conc":
            args += ["--handler-limit", str(HIGH)]
        m, dones = await drain_processes("benchmarks.limits", args, processes, admin, wait_s=60 + n / 200)
        res = m.fill(Result("ours", "drain", variant, n), n)
        res.check("jobs claimed", sum(d["claimed"] for d in dones), n)
        await ours._check_completed(admin, res, n)
    return res


async def _child(args: argparse.Namespace) -> None:
    app = App(args.dsn, schema=args.schema, auto_migrate=False)
    app.register(ours.HANDLER, ours.noop, concurrency_limit=args.handler_limit)
    async with app:
        await ready()
        cpu0 = time.process_time()
        worker = app.create_worker(concurrency=args.concurrency, burst=True)
        await worker.run()
        await done(worker.producer.claimed, cpu0)


async def _main(args: argparse.Namespace) -> int:
    dsn = tagged(args.dsn or bench_dsn())
    figures: dict[str, list[tuple[float, float | None]]] = {v: [] for v in VARIANTS}
    failed = False
    for round_ in range(1, args.rounds + 1):
        for variant in VARIANTS:
            res = await drain(dsn, variant, args.n, args.processes, args.concurrency)
            failed = failed or bool(res.errors)
            server = res.us_per_job(res.pg_cpu_s)
            figures[variant].append((res.jobs_per_s or 0.0, server))
            print(f"round {round_} {variant:>16}: {res.jobs_per_s:,.0f} jobs/s, server "
                  f"{'-' if server is None else f'{server:.1f}'} µs/job {' '.join(res.errors)}",
                  file=sys.stderr, flush=True)
    base = statistics.median(f[0] for f in figures["none"])
    print(f"\n{args.n:,} jobs, {args.processes} process(es) of concurrency {args.concurrency}, {args.rounds} rounds")
    print(f"{'variant':>16}  {'jobs/s (each round)':>32}  {'median':>8}  {'vs none':>7}  server µs/job (median)")
    for variant, runs in figures.items():
        rates = [r for r, _ in runs]
        servers = [s for _, s in runs if s is not None]
        med = statistics.median(rates)
        server = f"{statistics.median(servers):.1f}" if servers else "-"
        each = ", ".join(f"{r:,.0f}" for r in rates)
        print(f"{variant:>16}  {each:>32}  {med:>8,.0f}  {med / base:>6.2f}x  {server}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["child"]:
        p = argparse.ArgumentParser(prog="python -m benchmarks.limits child")
        p.add_argument("--dsn", required=True)
        p.add_argument("--schema", required=True)
        p.add_argument("--concurrency", type=int, default=100)
        p.add_argument("--handler-limit", type=int, default=None)
        asyncio.run(_child(p.parse_args(argv[1:])))
        return 0
    p = argparse.ArgumentParser(prog="python -m benchmarks.limits", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("-n", type=int, default=200_000)
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--dsn", default=None)
    args: Any = p.parse_args(argv)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    raise SystemExit(main())
