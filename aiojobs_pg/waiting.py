"""``App.wait``: until a job completes, fails or is cancelled, woken by a notification.

One LISTEN connection per App serves every wait, opened at the first one. A wait marks the
job ``awaited`` (so its completion, failure or cancellation sends ``done <id>`` or ``cancel <id>``
on the control channel), then reads the job; it reads it again on each notification about it and
after each reconnection of the listener (what was sent while it was away is lost). The row is
never polled, except by an App without a listener (PgBouncer in transaction mode and no
``listen_dsn``: docs/pgbouncer.md), whose waits read it every ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .errors import AiojobsPgError, JobNotFound, JobStateError
from .models import Job, JobStatus
from .notifier import Notifier
from .queries import DB, Connection, Queries

_FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class JobFailed(AiojobsPgError):
    """``App.wait``: the job failed for good (its attempts spent); ``job`` is it, ``error`` its last error."""

    def __init__(self, job: Job) -> None:
        last = (job.last_error or "").strip().splitlines()[-1:] or ["no error recorded"]
        super().__init__(f"job {job.id} ({job.handler}) failed after {job.attempts} attempt(s): {last[0]}")
        self.job = job
        self.error = job.last_error


class JobCancelled(AiojobsPgError):
    """``App.wait``: the job was cancelled (by a user, or by its handler raising :class:`Cancel`)."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} ({job.handler}) was cancelled")
        self.job = job


class Waiters:
    """The waits of one App: a listener, and an event per job waited for."""

    def __init__(self, queries: Queries, connect: Callable[[], Awaitable[Connection]] | None, *,
                 poll_interval: float = 1.0) -> None:
        self.queries = queries
        self._events: dict[int, set[asyncio.Event]] = {}
        #: None: no listener; each wait reads its job every ``poll_interval``
        self._notifier = None if connect is None else Notifier(
            connect, {queries.control_channel: self._on_control}, on_reconnect=self._wake_all)
        self.poll_interval = poll_interval
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        if self._notifier is None:
            self._connected.set()

    def _on_control(self, payload: str) -> None:
        kind, _, rest = payload.partition(" ")
        if kind in ("done", "cancel") and rest.isdigit():
            for event in self._events.get(int(rest), ()):
                event.set()

    def _wake_all(self) -> None:
        self._connected.set()
        for events in self._events.values():
            for event in events:
                event.set()

    async def wait(self, db: DB, job_id: int, timeout: float | None) -> Any:
        """The job's result once it completed; :class:`JobFailed` / :class:`JobCancelled` otherwise.

        Raises :class:`TimeoutError` when ``timeout`` seconds pass first, and
        :class:`JobStateError` for a recurring job, which never finishes by itself.
        """
        if self._task is None and self._notifier is not None:
            self._task = asyncio.get_running_loop().create_task(self._notifier.run())
        event = asyncio.Event()
        self._events.setdefault(job_id, set()).add(event)
        try:
            with anyio.fail_after(timeout):
                await self._connected.wait()  # listening before the job is marked: no notification is missed
                await self.queries.await_job(db, job_id)
                while True:
                    event.clear()
                    job = await self._read(db, job_id)
                    if job.status in _FINISHED:
                        return _outcome(job)
                    if job.schedule is not None:
                        raise JobStateError(job_id, job.status.value, "wait for",
                                            "it is recurring: it never finishes by itself")
                    if self._notifier is not None:
                        await event.wait()
                    else:
                        with anyio.move_on_after(self.poll_interval):
                            await event.wait()
        finally:
            events = self._events[job_id]
            events.discard(event)
            if not events:
                del self._events[job_id]

    async def _read(self, db: DB, job_id: int) -> Job:
        job = await self.queries.get_job(db, job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def close(self) -> None:
        """Stop listening."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._notifier is not None:
            self._connected.clear()


def _outcome(job: Job) -> Any:
    if job.status is JobStatus.FAILED:
        raise JobFailed(job)
    if job.status is JobStatus.CANCELLED:
        raise JobCancelled(job)
    return job.result
