"""The floor's and ours' single enqueue in one section, taking turns in blocks.

Each implementation's sections run one after the other, so the floor's 20,000
single inserts and ours' are measured ten seconds or more apart. On a shared
machine that is long enough for the host to change what it gives (CPU steal,
neighbours in the shared caches): on 2026-12-02 the same code read 0.71-1.31x
in six back-to-back runs. Here the participants take turns in ``BLOCKS`` blocks
of ``n / BLOCKS`` calls each, the one that goes first rotating from block to
block, so all see the same machine; each one's figures are the sum of its
blocks. The calls are those of ``floor.enqueue_single`` and
``ours.enqueue_single``, plus a third participant: the floor's insert made to
keep ours' contract (``floor.INSERT_CONTRACT``: it returns the id and creation
time and notifies the queue's workers, as ours must).

The report shows the pair as the variant ``single-alternating``, beside the
sequential ``single`` (the issue's target, against the bare insert), and the
third as ``single-contract``: a reference, not a target. Ours' row there
repeats ours' ``single-alternating`` figures, the same blocks, so that the
table prints the ratio.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace

import asyncpg

from benchmarks import floor, ours
from benchmarks.common import BenchConfig, Measured, Result, Section, measured
from benchmarks.pgcpu import PgCpu

__all__ = ["BLOCKS", "CONTRACT", "SECTIONS", "VARIANT", "enqueue_single_alternating"]

BLOCKS = 21  # a multiple of the three participants: each goes first, second and third equally often
VARIANT = "single-alternating"
CONTRACT = "single-contract"


async def enqueue_single_alternating(n: int, *, dsn: str) -> list[Result]:
    """``n`` single enqueues of each participant (rounded down to whole blocks), taking turns."""
    size = max(1, n // BLOCKS)
    async with floor._fresh_schema(dsn) as admin, ours._fresh_app(dsn) as app:
        # Each participant has a connection (a backend) of its own, so that none runs warmer than
        # another: in a scratch test, ours read 0.88-0.90x of the contract floor when the two took
        # turns alone, and 0.92-0.95x when a third participant shared ours' backend.
        conn, contract_conn = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
        try:
            payloads = [json.dumps({"i": i}) for i in range(size * BLOCKS)]
            data = [{"i": i} for i in range(size * BLOCKS)]

            async def floor_block(start: int) -> None:
                for p in payloads[start:start + size]:
                    await conn.execute(floor.INSERT_ONE, p)

            async def contract_block(start: int) -> None:
                for p in payloads[start:start + size]:
                    await contract_conn.fetchrow(floor.INSERT_CONTRACT, p)

            async def ours_block(start: int) -> None:
                for d in data[start:start + size]:
                    await app.enqueue(ours.HANDLER, d)

            # (impl, variant): the floor's two inserts share its table.
            turns: list[tuple[tuple[str, str], PgCpu, Callable[[int], Awaitable[None]]]] = [
                ((floor.IMPL, VARIANT), await PgCpu.attach(conn), floor_block),
                ((floor.IMPL, CONTRACT), await PgCpu.attach(contract_conn), contract_block),
                ((ours.IMPL, VARIANT), await PgCpu.attach(app.pool, await ours._enqueue_backend(app)), ours_block)]
            blocks: dict[tuple[str, str], list[Measured]] = {who: [] for who, _, _ in turns}
            for b in range(BLOCKS):
                first = b % len(turns)
                for who, cpu, block in turns[first:] + turns[:first]:
                    with measured(cpu) as m:
                        await block(b * size)
                    blocks[who].append(m)
        finally:
            await conn.close()
            await contract_conn.close()
        stored = {floor.IMPL: await floor._count(admin, "pending"), ours.IMPL: await ours._count(app, "pending")}
    expected = {floor.IMPL: 2 * size * BLOCKS, ours.IMPL: size * BLOCKS}
    results = []
    for (impl, variant), parts in blocks.items():
        res = Measured.total(parts).fill(Result(impl, "enqueue", variant, n=size * BLOCKS, seconds=0.0))
        res.jobs_per_s = res.n / res.seconds
        res.extra.update(blocks=BLOCKS, stored=stored[impl])
        if stored[impl] != expected[impl]:
            res.notes.append(f"ERROR: {stored[impl]} jobs stored, expected {expected[impl]}")
        results.append(res)
    theirs = next(r for r in results if r.impl == ours.IMPL)
    mirror = replace(theirs, variant=CONTRACT, extra=dict(theirs.extra), notes=[])
    mirror.extra["same_blocks_as"] = VARIANT
    return [*results, mirror]


async def _section(cfg: BenchConfig) -> list[Result]:
    return await enqueue_single_alternating(cfg.n, dsn=cfg.dsn)


SECTIONS: list[Section] = [
    Section("paired", "enqueue-alternating", _section,
            f"floor, floor keeping ours' contract, and ours' single enqueue taking turns in {BLOCKS} blocks"),
]
