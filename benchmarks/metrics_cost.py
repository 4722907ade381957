"""What Prometheus metrics cost a worker: drains with and without ``aiojobs_pg.metrics.instrument``.

``python -m benchmarks.metrics_cost [-n 20000] [--rounds 5] [--dsn DSN]``

One process, one App, one burst worker of concurrency 100 and the no-op handler; before each
drain the server inserts ``n`` jobs (not measured). Drains alternate, off then on, ``--rounds``
times each, so that the machine's slow and fast phases fall on both. Each drain reports its jobs
per second and the process's CPU per job (the worker's Python, where the metrics' work lands);
the summary gives the median of each and the difference. Needs the ``metrics`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry

from aiojobs_pg import App
from aiojobs_pg.metrics import instrument
from benchmarks.common import bench_dsn

SCHEMA = "bench_metrics_cost"


async def noop(data: Any) -> None:
    """The job handler: does nothing."""
    return None


async def drain_once(app: App, admin: asyncpg.Connection, n: int, metrics: bool) -> tuple[float, float]:
    """Jobs per second and CPU microseconds per job of one drain of ``n`` jobs."""
    await admin.execute(f"INSERT INTO {SCHEMA}.jobs (handler, data) SELECT 'noop', jsonb_build_object('i', g) "
                        "FROM generate_series(1, $1::int) AS g", n)
    await admin.execute(f"VACUUM ANALYZE {SCHEMA}.jobs")
    registry = CollectorRegistry()
    observer = instrument(app, registry) if metrics else None
    try:
        worker = app.create_worker(concurrency=100, burst=True)
        wall, cpu = time.perf_counter(), time.process_time()
        await worker.run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if metrics:  # the drain was counted: the figures are those of a working observer
            counted = registry.get_sample_value("aiojobs_pg_jobs_completed_total", {"handler": "noop",
                                                                                    "queue": "default"})
            assert counted == n, f"{counted} of {n} jobs counted"
    finally:
        if observer is not None:
            observer.unregister()
    left = await admin.fetchval(f"SELECT count(*) FROM {SCHEMA}.jobs")
    assert left == 0, f"{left} jobs left"
    return n / wall, cpu / n * 1e6


async def main(dsn: str, n: int, rounds: int) -> None:
    """Alternate drains off and on; print each and the medians."""
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    try:
        app = App(dsn, schema=SCHEMA, enable_history=True)
        app.register("noop", noop)
        async with app:
            await drain_once(app, admin, n // 4, False)  # warm up: prepared statements, pool
            results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for i in range(rounds):
                for metrics in (False, True) if i % 2 == 0 else (True, False):
                    rate, cpu = await drain_once(app, admin, n, metrics)
                    results[metrics].append((rate, cpu))
                    print(f"round {i + 1} metrics={'on ' if metrics else 'off'} {rate:9.0f} jobs/s "
                          f"{cpu:6.1f} us CPU/job", flush=True)
        medians = {m: (statistics.median(r for r, _ in rs), statistics.median(c for _, c in rs))
                   for m, rs in results.items()}
        (off_rate, off_cpu), (on_rate, on_cpu) = medians[False], medians[True]
        print(f"median off: {off_rate:.0f} jobs/s, {off_cpu:.1f} us CPU/job")
        print(f"median on:  {on_rate:.0f} jobs/s, {on_cpu:.1f} us CPU/job")
        print(f"metrics on: {on_cpu - off_cpu:+.1f} us CPU/job ({(on_cpu / off_cpu - 1) * 100:+.1f}%), "
              f"throughput {(on_rate / off_rate - 1) * 100:+.1f}%")
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metrics_cost", description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20_000, help="jobs per drain (20,000)")
    parser.add_argument("--rounds", type=int, default=5, help="drains of each kind (5)")
    parser.add_argument("--dsn", default=bench_dsn(), help="the server ($AIOJOBS_PG_BENCH_DSN)")
    args = parser.parse_args()
    asyncio.run(main(args.dsn, args.n, args.rounds))
