"""Progress that running handlers report (``await ctx.progress(0.4, "4 of 10")``), written in batches.

A handler may report as often as it likes: the writer keeps the latest value of each run and
writes all of them in one statement at most every ``interval`` seconds, so a chatty handler
costs the database nothing more than a quiet one. Each write is fenced by the run's claim token
and the status ``running``, so a value that arrives after its run ended changes nothing.
"""

from __future__ import annotations

import asyncio

import anyio

from .logs import get_logger
from .queries import DB_ERRORS, Pool, Queries

log = get_logger("aiojobs_pg.progress")


class ProgressWriter:
    """The latest progress of each running job, flushed every ``interval`` seconds at most."""

    def __init__(self, pool: Pool, queries: Queries, *, interval: float = 0.5) -> None:
        self.pool = pool
        self.queries = queries
        self.interval = interval
        #: job id -> (claim token, fraction, message), waiting for the next write
        self._pending: dict[int, tuple[int, float, str | None]] = {}
        self._wake = asyncio.Event()
        self.writes = 0

    def report(self, job_id: int, token: int, fraction: float, message: str | None) -> None:
        """Keep ``fraction`` (and ``message``) as the run's progress; written within ``interval``."""
        self._pending[job_id] = (token, fraction, message)
        self._wake.set()

    async def run(self) -> None:
        """Write what was reported, then wait ``interval`` before the next write; forever."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            try:
                await self.queries.set_progress(self.pool, [(job_id, *v) for job_id, v in batch.items()])
                self.writes += 1
            except DB_ERRORS as exc:
                # Progress is advisory: keep what was not overtaken by a newer value, try again later.
                log.warning("progress_write_failed", error=repr(exc), jobs=len(batch))
                self._pending = {**batch, **self._pending}
                self._wake.set()
            await anyio.sleep(self.interval)
