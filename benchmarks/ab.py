"""Interleaved A/B of source trees: ``python -m benchmarks.ab [--rounds 3] [TREE ...]``.

A full run compares figures taken minutes apart, and this machine drifts by tens of
percent in that time. Here each round runs, for every tree in turn, the floor and ours
back to back: enqueue one at a time (the floor's and ``app.enqueue``), in batches of 1,000
(the floor's and ``app.enqueue_many``), a drain
(the floor's one loop, ``c1``, and ours at ``c100``, history on) and the latency test
(500 jobs at 50/s to an idle worker, the floor's and ours). Each tree is measured
by its own code (its ``aiojobs_pg`` and its ``benchmarks``), in a subprocess, so a
tree can be an old commit: ``git worktree add /tmp/old <commit>``, then
``python -m benchmarks.ab /tmp/old .``. With no TREE, the repository this file is in.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import bench_dsn

ROOT = Path(__file__).resolve().parent.parent

# Runs inside the tree under test, so that it uses that tree's floor and ours.
_ROUND = """
import asyncio, json, sys
from benchmarks import floor, ours

async def main(dsn, single, drained):
    fs = await floor.enqueue_single(single, dsn=dsn)
    os_ = await ours.enqueue_single(single, dsn=dsn)
    fb = await floor.enqueue_batch(drained, dsn=dsn)
    ob = await ours.enqueue_batch(drained, dsn=dsn)
    fd = await floor.drain(drained, 1, dsn=dsn)
    od = await ours.drain(drained, 100, dsn=dsn)
    fl = await floor.latency(500, 50.0, dsn=dsn, claim_batch=100)
    ol = await ours.latency(500, 50.0, dsn=dsn)
    print(json.dumps({
        "single": os_.jobs_per_s / fs.jobs_per_s,
        "single_server_us": [r.pg_cpu_s / r.n * 1e6 for r in (os_, fs)],
        "batch": ob.jobs_per_s / fb.jobs_per_s,
        "batch_client_us": ob.client_cpu_s / ob.n * 1e6,
        "drain": od.jobs_per_s / fd.jobs_per_s,
        "pg_cpu": (od.pg_cpu_s / od.n) / (fd.pg_cpu_s / fd.n),
        "drain_server_us": [r.pg_cpu_s / r.n * 1e6 for r in (od, fd)],
        "drain_client_us": od.client_cpu_s / od.n * 1e6,
        "p50": ol.p50_ms / fl.p50_ms,
        "p99": ol.p99_ms / fl.p99_ms,
        "latency_ms": [ol.p50_ms, fl.p50_ms, ol.p99_ms, fl.p99_ms],
        "latency_client_us": ol.client_cpu_s / ol.n * 1e6,
    }))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""

_FIGURES = (("single", "enqueue single, ours/floor", "{:.2f}x"),
            ("batch", "enqueue batch of 1,000, ours/floor", "{:.2f}x"),
            ("batch_client_us", "enqueue batch client CPU per job, ours", "{:.2f} µs"),
            ("pg_cpu", "drain server CPU per job, ours c100 / floor c1", "{:.2f}x"),
            ("drain", "drain jobs/s, ours c100 / floor c1", "{:.2f}x"),
            ("drain_client_us", "drain client CPU per job, ours c100", "{:.1f} µs"),
            ("p50", "latency p50, ours/floor", "{:.2f}x"),
            ("p99", "latency p99, ours/floor", "{:.2f}x"),
            ("latency_client_us", "latency client CPU per job, ours", "{:.0f} µs"))


def _one_round(tree: Path, dsn: str, single: int, drained: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", _ROUND, dsn, str(single), str(drained)], cwd=tree, env=env,
                         capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n\n")[0])
    p.add_argument("trees", nargs="*", type=Path, help="source trees (default: this repository)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--single", type=int, default=5_000, help="jobs enqueued one at a time per round")
    p.add_argument("--drain", type=int, default=20_000, help="jobs drained (and batch-enqueued) per round")
    p.add_argument("--dsn", default=None, help="default: $AIOJOBS_PG_BENCH_DSN or the local server")
    args = p.parse_args(argv)
    trees = [t.resolve() for t in args.trees] or [ROOT]
    dsn = args.dsn or bench_dsn()
    rounds: dict[Path, list[dict[str, Any]]] = {t: [] for t in trees}
    for k in range(1, args.rounds + 1):
        for tree in trees:
            r = _one_round(tree, dsn, args.single, args.drain)
            rounds[tree].append(r)
            single_us, drain_us, lat = r["single_server_us"], r["drain_server_us"], r["latency_ms"]
            print(f"round {k} {tree}: single {r['single']:.2f}x, batch {r['batch']:.2f}x,"
                  f" drain {r['drain']:.2f}x, server CPU"
                  f" {r['pg_cpu']:.2f}x ({drain_us[0]:.1f} vs {drain_us[1]:.1f} µs per drained job;"
                  f" {single_us[0]:.0f} vs {single_us[1]:.0f} µs per single enqueue; ours' client CPU"
                  f" {r['drain_client_us']:.1f} µs per drained job); latency p50 {r['p50']:.2f}x, p99"
                  f" {r['p99']:.2f}x ({lat[0]:.2f}/{lat[2]:.2f} vs {lat[1]:.2f}/{lat[3]:.2f} ms)", flush=True)
    print("\nmedians of the rounds:")
    for key, label, fmt in _FIGURES:
        cells = ", ".join(f"{tree.name or tree}: " + fmt.format(statistics.median(r[key] for r in rs))
                          for tree, rs in rounds.items())
        print(f"  {label}: {cells}")


if __name__ == "__main__":
    main()
