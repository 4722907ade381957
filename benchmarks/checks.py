"""What row CHECK constraints cost the single enqueue: ``python -m benchmarks.checks [--blocks 30]``.

The decision it settles (docs/performance.md, "Row CHECK constraints"): restore the CHECKs
that migration 0005 dropped unless they cost over 5% of a single enqueue. Three schemas,
each migrated in full: as shipped (no CHECKs), with the seven CHECKs 0005 dropped, and with
one CHECK combining them. ``app.enqueue`` runs in blocks of 500 calls that take turns
(whoever goes first rotates), so all three see the same machine; the report is the median
time per call and its difference from the schema as shipped.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg

from aiojobs_pg import App
from benchmarks.common import bench_dsn, schema_name

BLOCK = 500
SEVEN = """ALTER TABLE {s}.jobs
    ADD CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    ADD CHECK (attempts >= 0), ADD CHECK (max_attempts >= 1), ADD CHECK (timeout > 0),
    ADD CHECK (misfire IN ('skip', 'all')), ADD CHECK (overlap IN ('wait', 'skip'));
ALTER TABLE {s}.job_runs ADD CHECK (status IN ('completed', 'failed', 'cancelled', 'released'))"""
ONE = """ALTER TABLE {s}.jobs ADD CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')
    AND attempts >= 0 AND max_attempts >= 1 AND timeout > 0 AND misfire IN ('skip', 'all')
    AND overlap IN ('wait', 'skip'))"""
VARIANTS = {"shipped": "", "seven": SEVEN, "one": ONE}


async def main(blocks: int) -> None:
    dsn = bench_dsn()
    admin = await asyncpg.connect(dsn)
    apps: dict[str, App] = {}
    try:
        for variant, sql in VARIANTS.items():
            app = App(dsn, schema=schema_name(f"checks_{variant}"))
            app.register("noop", lambda data: None)
            await app.open()
            if sql:
                await admin.execute(sql.format(s=app.schema))
            for _ in range(BLOCK):  # warm: the connection prepared its statement, the table has pages
                await app.enqueue("noop", {"k": 1})
            apps[variant] = app
        per_call: dict[str, list[float]] = {v: [] for v in apps}
        names = list(apps)
        for block in range(blocks):
            for variant in names[block % len(names):] + names[:block % len(names)]:
                start = time.perf_counter()
                for _ in range(BLOCK):
                    await apps[variant].enqueue("noop", {"k": 1})
                per_call[variant].append((time.perf_counter() - start) / BLOCK * 1e6)
    finally:
        for app in apps.values():
            await app.close()
            await admin.execute(f"DROP SCHEMA IF EXISTS {app.schema} CASCADE")
        await admin.close()
    base = statistics.median(per_call["shipped"])
    print(f"single enqueue, median of {blocks} blocks of {BLOCK} calls taking turns")
    for variant, times in per_call.items():
        median = statistics.median(times)
        print(f"  {variant:8s} {median:7.1f} µs per call  {(median / base - 1) * 100:+6.1f}% against shipped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.checks", description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=30, help="blocks per schema (default: 30)")
    asyncio.run(main(parser.parse_args().blocks))
