"""What a worker's components did, counted, so tests (ours and users') wait on events, not on sleeps.

Each component emits a name when it finishes a step: ``claim`` (a claim statement
returned, with or without jobs), ``flush`` (a completion batch was written),
``renew`` (a round of lease renewal and heartbeat), ``rescue`` (a maintenance round
looked for expired leases), ``prune`` (a pruning round ran) or ``prune_skipped`` (another
worker held the pruning lock).
"""

from __future__ import annotations

import asyncio
from collections import Counter


class Signals:
    """Counters of a worker's steps, and a way to wait for the next ones."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._changed = asyncio.Event()  # set at each emit; waiters clear it and look again

    def emit(self, name: str) -> None:
        """Count one more ``name``."""
        self.counts[name] += 1
        self._changed.set()

    async def wait(self, name: str, count: int | None = None) -> int:
        """Until ``name`` has been emitted ``count`` times in all (default: once more than now); returns the count.

        Bound it with a timeout of your own (``asyncio.wait_for``), as any wait in a test.
        """
        target = self.counts[name] + 1 if count is None else count
        while self.counts[name] < target:
            self._changed.clear()
            await self._changed.wait()
        return self.counts[name]
