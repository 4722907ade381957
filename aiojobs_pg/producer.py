"""The claim loop: fill free slots with due jobs, on a notification, a poll tick or a free slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from .lane import Lane
from .limits import ClaimPlan
from .logs import get_logger
from .models import ClaimedJob
from .queries import DB_ERRORS, ClaimCondition, Queries
from .signals import Signals

log = get_logger("aiojobs_pg.producer")


class Producer:
    """Claims up to the number of free slots in one statement and hands jobs to ``spawn``.

    After a claim that filled every free slot, more work is probably waiting, so
    the next claim happens as soon as slots free up; otherwise the producer sleeps
    until a notification or the next poll tick.
    """

    def __init__(self, lane: Lane, queries: Queries, *, worker_id: str, queues: Sequence[str],
                 handlers: Sequence[str], lease: float, poll_interval: float, free_slots: Callable[[], int],
                 spawn: Callable[[ClaimedJob], None], burst: bool = False,
                 idle: Callable[[], bool] = lambda: True, max_claim: int = 1000,
                 conditions: Sequence[ClaimCondition] = (), signals: Signals | None = None) -> None:
        self.lane = lane
        self.queries = queries
        #: the claim statement: jobs of this worker's handlers, meeting its conditions
        self.claim = queries.claim_for(handlers, conditions)
        self._conditions = tuple(conditions)
        #: how to claim when some of the worker's pairs are under limits; None: the plain claim above (the worker
        #: sets it, see limits.py)
        self.plan: ClaimPlan | None = None
        self.signals = signals or Signals()
        self.worker_id = worker_id
        self.queues = list(queues)
        self.lease = lease
        self.poll_interval = poll_interval
        self.free_slots = free_slots
        self.spawn = spawn
        self.max_claim = max_claim
        self.burst = burst
        self.idle = idle
        self.stopping = False
        # asyncio's events, cleared and reused: an anyio.Event costs a sniffio lookup each time one is
        # made, and these are made again for every claim (asyncpg ties the worker to asyncio anyway).
        self._wake = asyncio.Event()
        self._slots = asyncio.Event()
        #: earliest time (time.monotonic) a job this worker knows of becomes due (see due_in)
        self._due_hint: float | None = None
        #: ask the database when the next deferred job is due before sleeping: at the start, after a
        #: reconnection of the listener (hints may have been missed) and when the last hint came due
        self._learn_due = True
        #: while the producer sleeps: when its timer sets ``_wake``, and the timer
        self._sleep_until: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.claims = 0
        self.claimed = 0
        #: monotonic time the last claim was sent (its leases run out lease seconds after, at the latest)
        self.claim_sent_at = 0.0

    def serve(self, queues: Sequence[str], handlers: Sequence[str]) -> None:
        """Claim from ``queues`` with ``handlers`` from the next claim on (the worker adds and removes the
        webhook deliveries' queue this way: webhooks.py), and ask again when their next job is due."""
        self.queues = list(queues)
        self.claim = self.queries.claim_for(handlers, self._conditions)
        self._learn_due = True
        self.wake()

    def wake(self) -> None:
        """Claim now (a notification arrived, or the producer must notice it is stopping)."""
        self._wake.set()

    def reconnected(self) -> None:
        """The listener (re)connected: what was sent while it was away is lost, so look again."""
        self._learn_due = True
        self.wake()

    def due_in(self, seconds: float) -> None:
        """A job becomes due in ``seconds`` (a deferred job, a retry, the next tick): claim then, not at
        the next poll. Only the earliest is kept: when it comes due, the database tells the next."""
        at = time.monotonic() + max(0.0, seconds)
        if self._due_hint is None or at < self._due_hint:
            self._due_hint = at
            if self._sleep_until is not None and at < self._sleep_until:
                self._arm(at)  # asleep until after it: wake up in time instead

    def _sleep_budget(self) -> float:
        if self._due_hint is None:
            return self.poll_interval
        return max(0.0, min(self.poll_interval, self._due_hint - time.monotonic()))

    def slot_freed(self) -> None:
        """A job finished: a waiting producer may claim again."""
        self._slots.set()

    async def claim_once(self) -> int:
        """One claim of up to the free slots; returns how many jobs were claimed."""
        limit = min(self.free_slots(), self.max_claim)
        if limit <= 0:
            return 0
        # The leases are set by the database during the claim: no earlier than now.
        self.claim_sent_at = time.monotonic()
        plan = self.plan
        if plan is None:
            jobs = await self.lane.run(self.queries.claim, self.queues, limit, self.lease, self.worker_id, self.claim)
        else:  # some pairs are under limits (limits.py)
            jobs = await self.lane.run(plan.claim, limit, self.lease, self.worker_id)
        self.claims += 1
        self.claimed += len(jobs)
        for job in jobs:
            self.spawn(job)
        if len(jobs) < limit and self._learn_due:
            await self._ask_next_due()
        self.signals.emit("claim")
        return len(jobs)

    async def _ask_next_due(self) -> None:
        # Idle from here: learn when to wake. Asked after the claimed jobs started, so they never wait
        # on it. (A job that came due between the two statements is seen neither due by the claim
        # nor ahead by this; the next poll takes it.) A failure is logged and asked again next time.
        try:
            due = await self.lane.run(self.queries.next_due, self.queues, self.claim.handlers)
        except DB_ERRORS as exc:  # the poll still covers every job
            log.warning("next_due_failed", error=repr(exc), worker_id=self.worker_id)
            return
        self._learn_due = False
        if due is not None:
            self.due_in(due)

    async def _wait_for_slot(self) -> None:
        await self._slots.wait()
        self._slots.clear()

    def _arm(self, at: float) -> None:
        # A timer that sets the event is a third of the cost of a cancel scope with a deadline.
        if self._timer is not None:
            self._timer.cancel()
        self._sleep_until = at
        self._timer = asyncio.get_running_loop().call_later(max(0.0, at - time.monotonic()), self._wake.set)

    async def _wait_for_wake(self, seconds: float) -> None:
        self._arm(time.monotonic() + seconds)
        try:
            await self._wake.wait()
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._sleep_until = None

    async def run(self) -> None:
        """Claim until ``stopping``; database errors are logged and retried at the next tick.

        In burst mode, return once a claim finds nothing due and no job is in flight.
        """
        backlog = True
        while not self.stopping:
            while self.free_slots() <= 0 and not self.stopping:
                await self._wait_for_slot()
            if not backlog:
                await self._wait_for_wake(self._sleep_budget())
            if self._due_hint is not None and self._due_hint <= time.monotonic():
                self._due_hint = None
                self._learn_due = True
            # Reset before claiming: a notification that arrives during the claim wakes the next one.
            self._wake.clear()
            if self.stopping:
                break
            free = min(self.free_slots(), self.max_claim)
            try:
                got = await self.claim_once()
            except Exception as exc:  # a database error, or one decoding a row: never fatal
                # Jobs a failed claim may have taken stay running until their lease runs out: rescued then.
                log.warning("claim_failed", error=repr(exc), worker_id=self.worker_id)
                backlog = False
                continue
            if self.burst and got == 0:
                if self.idle():
                    return
                await self._wait_for_slot()
                backlog = True
                continue
            # Under limits, a claim that took some but not all may have been cut short by one group's limit
            # (the jobs ahead of the others': passed over from the next claim on): claim again at once.
            backlog = got > 0 and (got >= free or self.plan is not None)
