"""Lifecycle hooks in the worker's process: ``@app.on("failed") async def alert(job, error): ...``.

A hook runs after the outcome it is about was committed, in a task of its own, so a slow
hook delays no job and a hook that raises is logged and changes nothing. A worker that stops
gracefully waits for the hooks still running (at most its ``drain_timeout``). Hooks fire in the
process that ran the attempt: an attempt whose worker died (rescued when its lease expired)
fires none.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import ValidationError
from .logs import get_logger
from .models import ClaimedJob, JobStatus, Outcome, RunStatus

log = get_logger("aiojobs_pg.events")

#: ``completed``: a run succeeded; ``failed``: a run failed for good (its attempts spent; a recurring
#: job moves on to its next tick); ``cancelled``: the job was cancelled while it ran, or its handler
#: raised Cancel; ``retrying``: a run failed and the job will run again after its backoff.
EVENTS = ("completed", "failed", "cancelled", "retrying")

#: ``hook(job, error)``: the job as its worker claimed it, and the run's error (None when it completed)
Hook = Callable[[ClaimedJob, str | None], Awaitable[None] | None]


def event_of(outcome: Outcome) -> str | None:
    """The event an applied outcome is (None for a release at shutdown)."""
    if outcome.run_status is RunStatus.COMPLETED:
        return "completed"
    if outcome.run_status is RunStatus.CANCELLED:
        return "cancelled"
    if outcome.run_status is RunStatus.FAILED:
        retrying = outcome.job_status is JobStatus.PENDING and outcome.next_run_at is None
        return "retrying" if retrying else "failed"
    return None


class Hooks:
    """Hooks by event, and the tasks running them."""

    def __init__(self) -> None:
        self.by_event: dict[str, list[Hook]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __bool__(self) -> bool:
        return bool(self.by_event)

    @staticmethod
    def check(event: str) -> None:
        """Refuse a name that is not one of :data:`EVENTS`."""
        if event not in EVENTS:
            raise ValidationError("event", f"unknown event {event!r}; use one of {', '.join(EVENTS)}")

    def add(self, event: str, hook: Hook) -> None:
        """Call ``hook`` on each ``event`` (one of :data:`EVENTS`)."""
        self.check(event)
        self.by_event.setdefault(event, []).append(hook)

    def fire(self, job: ClaimedJob, outcome: Outcome) -> None:
        """Start the hooks of the event ``outcome`` is, each in a task of its own."""
        event = event_of(outcome)
        if event is None:
            return
        for hook in self.by_event.get(event, ()):
            task = asyncio.get_running_loop().create_task(self._call(hook, event, job, outcome.error))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def settle(self, timeout: float) -> None:
        """Wait, at most ``timeout`` seconds, for the hooks still running (a worker that stops lets its
        last outcomes' hooks finish rather than drop them)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def _call(self, hook: Hook, event: str, job: ClaimedJob, error: str | None) -> None:
        try:
            result: Any = hook(job, error)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # a hook's bug never touches the job
            log.warning("hook_failed", event=event, hook=getattr(hook, "__qualname__", repr(hook)), job_id=job.id,
                        error=repr(exc))
