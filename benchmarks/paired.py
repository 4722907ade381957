"""The floor's and ours' single enqueue in one section, taking turns in blocks.

Each implementation's sections run one after the other, so the floor's 20,000
single inserts and ours' are measured ten seconds or more apart. On a shared
machine that is long enough for the host to change what it gives (CPU steal,
neighbours in the shared caches): on 2026-12-02 the same code read 0.71-1.31x
in six back-to-back runs. Here the two take turns in ``BLOCKS`` blocks of
``n / BLOCKS`` calls each, the one that goes first alternating from block to
block, so both see the same machine; each one's figures are the sum of its
blocks. The calls are those of ``floor.enqueue_single`` and
``ours.enqueue_single``. The report shows the pair as the variant
``single-alternating``, beside the sequential ``single``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import asyncpg

from benchmarks import floor, ours
from benchmarks.common import BenchConfig, Measured, Result, Section, measured
from benchmarks.pgcpu import PgCpu

__all__ = ["BLOCKS", "SECTIONS", "VARIANT", "enqueue_single_alternating"]

BLOCKS = 20
VARIANT = "single-alternating"


async def enqueue_single_alternating(n: int, *, dsn: str) -> list[Result]:
    """``n`` single enqueues of each implementation (rounded down to whole blocks), taking turns."""
    size = max(1, n // BLOCKS)
    async with floor._fresh_schema(dsn) as admin, ours._fresh_app(dsn) as app:
        conn = await asyncpg.connect(dsn)
        try:
            payloads = [json.dumps({"i": i}) for i in range(size * BLOCKS)]
            data = [{"i": i} for i in range(size * BLOCKS)]

            async def floor_block(start: int) -> None:
                for p in payloads[start:start + size]:
                    await conn.execute(floor.INSERT_ONE, p)

            async def ours_block(start: int) -> None:
                for d in data[start:start + size]:
                    await app.enqueue(ours.HANDLER, d)

            turns: list[tuple[str, PgCpu, Callable[[int], Awaitable[None]]]] = [
                (floor.IMPL, await PgCpu.attach(conn), floor_block),
                (ours.IMPL, await PgCpu.attach(app.pool, await ours._enqueue_backend(app)), ours_block)]
            blocks: dict[str, list[Measured]] = {impl: [] for impl, _, _ in turns}
            for b in range(BLOCKS):
                for impl, cpu, block in turns if b % 2 == 0 else reversed(turns):
                    with measured(cpu) as m:
                        await block(b * size)
                    blocks[impl].append(m)
        finally:
            await conn.close()
        stored = {floor.IMPL: await floor._count(admin, "pending"), ours.IMPL: await ours._count(app, "pending")}
    results = []
    for impl, parts in blocks.items():
        res = Measured.total(parts).fill(Result(impl, "enqueue", VARIANT, n=size * BLOCKS, seconds=0.0))
        res.jobs_per_s = res.n / res.seconds
        res.extra.update(blocks=BLOCKS, stored=stored[impl])
        if stored[impl] != res.n:
            res.notes.append(f"ERROR: {stored[impl]} jobs stored, expected {res.n}")
        results.append(res)
    return results


async def _section(cfg: BenchConfig) -> list[Result]:
    return await enqueue_single_alternating(cfg.n, dsn=cfg.dsn)


SECTIONS: list[Section] = [
    Section("paired", "enqueue-alternating", _section,
            f"floor and ours' single enqueue taking turns in {BLOCKS} blocks"),
]
