"""What the row triggers of jobs (dependencies, migration 0012; webhooks, 0014) cost the rows they do not fire for.

``python -m benchmarks.triggers [--rows 100000] [--rounds 6]``: two schemas, one with the triggers and one
without, in one session; each round inserts the rows, updates them from pending to running (what a claim
writes) and deletes them (what a one-off job's completion writes), timed per statement, the two schemas in
turns. Prints the median and every round's microseconds per row.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg

from aiojobs_pg.schema import migrate
from benchmarks.common import bench_dsn, schema_name

TRIGGERS = ("jobs_settle_dependents", "jobs_release_dependents", "jobs_webhooks_ended")


async def _round(conn: asyncpg.Connection, schema: str, rows: int) -> tuple[float, float]:
    await conn.execute(f"INSERT INTO {schema}.jobs (handler, data, queue, priority, max_attempts) "
                       f"SELECT 'h', 'null', 'default', 0, 3 FROM generate_series(1, {rows})")
    started = time.perf_counter()
    await conn.execute(f"UPDATE {schema}.jobs SET status = 'running'")
    updated = time.perf_counter()
    await conn.execute(f"DELETE FROM {schema}.jobs")
    deleted = time.perf_counter()
    await conn.execute(f"VACUUM {schema}.jobs")
    return (updated - started) / rows * 1e6, (deleted - updated) / rows * 1e6


async def main(rows: int, rounds: int) -> None:
    conn = await asyncpg.connect(bench_dsn())
    schemas = {"with triggers": schema_name("trig_on"), "without": schema_name("trig_off")}
    try:
        for label, schema in schemas.items():
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            await migrate(conn, schema)
            if label == "without":
                for trigger in TRIGGERS:
                    await conn.execute(f"DROP TRIGGER {trigger} ON {schema}.jobs")
        times: dict[str, list[tuple[float, float]]] = {label: [] for label in schemas}
        for i in range(rounds):
            for label in (list(schemas) if i % 2 == 0 else list(reversed(schemas))):
                times[label].append(await _round(conn, schemas[label], rows))
        for label, got in times.items():
            update = statistics.median(u for u, _ in got)
            delete = statistics.median(d for _, d in got)
            print(f"{label:>14}: update {update:.2f} µs/row, delete {delete:.2f} µs/row (median of {rounds}); "
                  f"rounds {[(round(u, 2), round(d, 2)) for u, d in got]}")
    finally:
        for schema in schemas.values():
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.rounds))
