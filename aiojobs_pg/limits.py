"""Fleet-wide limits (docs/limits.md): which of a worker's (queue, handler) pairs are under a limit, and
how it claims them.

A queue's limits are kept in the ``queues`` table (``App.set_queue``), a handler's are declared in code
(``@app.handler(concurrency_limit=, rate_limit=)``). A worker that serves no pair under a limit claims
as it always did, in one plain statement; this module is not on its path. Otherwise its
:class:`ClaimPlan` claims the pairs under limits with the limited claim (``claim_limited`` in
queries.py, exact across workers and hosts: migration 0013) and the others with the plain one. The
worker builds the plan when it starts and again when a queue's limits change (the control channel's
``limits <queue>``, and every lease/3 in case that notification was missed). A plain claim never takes
a job of a queue that has limits in the database, so a worker that has not heard of new limits yet
claims too little for a moment, never too much.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .executor import HandlerSpec
from .models import ClaimedJob
from .queries import ClaimCondition, HandlerLimits, Queries, QueueRow
from .validation import RateLimit


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """A queue's limits, as kept in ``queues``: None is none."""

    concurrency: int | None = None
    rate: RateLimit | None = None

    @classmethod
    def from_row(cls, row: QueueRow) -> QueueLimits:
        """The limits of a row of ``Queries.queue_settings``."""
        rate = row.rate_limit
        return cls(row.concurrency_limit, None if rate is None or row.rate_period is None
                   else RateLimit(rate, row.rate_period))

    def __bool__(self) -> bool:
        return self.concurrency is not None or self.rate is not None

    def __str__(self) -> str:
        return ", ".join([f"concurrency {self.concurrency}"] * (self.concurrency is not None)
                         + [f"rate {self.rate}"] * (self.rate is not None)) or "none"


def limited_handlers(handlers: Mapping[str, HandlerSpec]) -> dict[str, HandlerSpec]:
    """The handlers declared with a limit."""
    return {name: spec for name, spec in handlers.items()
            if spec.concurrency_limit is not None or spec.rate_limit is not None}


class ClaimPlan:
    """How one worker claims when some of its (queue, handler) pairs are under limits.

    Each claim takes the pairs under limits first, in one limited statement (at most their limits let
    start), then fills the slots left from the other pairs with the plain statement. The order of
    priority and due time holds within each of the two, not across them.
    """

    def __init__(self, queries: Queries, queues: Sequence[str], handlers: Sequence[str],
                 specs: Mapping[str, HandlerSpec], queue_limits: Mapping[str, QueueLimits],
                 conditions: Sequence[ClaimCondition] = ()) -> None:
        self.queries = queries
        limited = limited_handlers({h: specs[h] for h in handlers if h in specs})
        limited_queues = {q for q in queues if queue_limits.get(q)}
        #: the pairs under a limit: a limited queue's with any handler, a limited handler's in any queue
        self.pairs = [(q, h) for q in queues for h in handlers if q in limited_queues or h in limited]
        self.limited_pairs = frozenset(self.pairs)
        self.plain_queues = [q for q in queues if q not in limited_queues]
        plain_handlers = [h for h in handlers if h not in limited]
        self.plain = (queries.claim_for(plain_handlers, conditions)
                      if self.plain_queues and plain_handlers else None)
        self.limited = queries.claim_limited_for(handlers, conditions) if self.pairs else None
        names = sorted(limited)
        self.handler_limits: HandlerLimits = (
            names, [limited[h].concurrency_limit for h in names],
            [_count(limited[h].rate_limit) for h in names], [_period(limited[h].rate_limit) for h in names])
        #: what the plan was built from, to tell whether a reload changes anything
        self.queue_limits = {q: queue_limits[q] for q in sorted(limited_queues)}

    async def claim(self, conn: Any, limit: int, lease: float, worker_id: str) -> list[ClaimedJob]:
        """Claim up to ``limit`` jobs: those the limits let start, then the others."""
        jobs: list[ClaimedJob] = []
        if self.limited is not None:
            jobs = await self.queries.claim_limited(conn, self.pairs, limit, lease, worker_id, self.limited,
                                                    self.handler_limits)
        if self.plain is not None and len(jobs) < limit:
            jobs += await self.queries.claim(conn, self.plain_queues, limit - len(jobs), lease, worker_id, self.plain)
        return jobs


def plan_claims(queries: Queries, queues: Sequence[str], handlers: Sequence[str], specs: Mapping[str, HandlerSpec],
                settings: Collection[QueueRow], conditions: Sequence[ClaimCondition] = ()) -> ClaimPlan | None:
    """The plan of a worker with these queues and handlers, given every queue's settings row; None when
    none of its pairs is under a limit (the worker claims in one plain statement)."""
    queue_limits = {row.name: QueueLimits.from_row(row) for row in settings}
    plan = ClaimPlan(queries, queues, handlers, specs, queue_limits, conditions)
    return plan if plan.pairs else None


def _count(rate: RateLimit | None) -> int | None:
    return None if rate is None else rate.count


def _period(rate: RateLimit | None) -> float | None:
    return None if rate is None else rate.period
