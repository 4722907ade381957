"""Exception tree of aiojobs_pg, and the two signals a handler may raise.

Everything the library raises on bad input derives from :class:`AiojobsPgError`
(and from :class:`ValueError` where the problem is a bad value), so callers can
catch one base class. So does :class:`DatabaseUnavailable`, an outage seen by a call.
"""

from __future__ import annotations

from datetime import timedelta


class AiojobsPgError(Exception):
    """Base class of every error raised by aiojobs_pg."""


class ConfigurationError(AiojobsPgError):
    """The app is misconfigured (no DSN and no embedded server, bad setting, ...)."""


class ValidationError(AiojobsPgError, ValueError):
    """Input was rejected before anything was written.

    ``field`` names the offending argument (``"queue"``, ``"data"``, ...).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class DataTooLarge(ValidationError):
    """Job data (or a handler's result) whose JSON encoding is over ``App(max_data_bytes=...)``.

    ``size`` is the length in bytes of the UTF-8 JSON text that would have been stored,
    ``limit`` the setting it exceeds.
    """

    def __init__(self, field: str, size: int, limit: int) -> None:
        super().__init__(field, f"is {size} bytes as JSON; the limit is {limit} bytes (max_data_bytes)")
        self.size = size
        self.limit = limit


class InvalidSchedule(ValidationError):
    """A schedule (interval or cron) or its time zone could not be parsed."""

    def __init__(self, message: str, field: str = "schedule") -> None:
        super().__init__(field, message)


class UnknownHandler(ValidationError):
    """The handler name is not registered with the app."""

    def __init__(self, handler: str, known: list[str] | None = None) -> None:
        hint = f" (registered: {', '.join(sorted(known))})" if known else ""
        super().__init__("handler", f"unknown handler {handler!r}{hint}")
        self.handler = handler


class JobNotFound(AiojobsPgError, LookupError):
    """No job has this id."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class WebhookNotFound(AiojobsPgError, LookupError):
    """No webhook has this id."""

    def __init__(self, webhook_id: int) -> None:
        super().__init__(f"webhook {webhook_id} not found")
        self.webhook_id = webhook_id


class JobStateError(AiojobsPgError):
    """The operation does not apply to the job in its current status."""

    def __init__(self, job_id: int, status: str, operation: str, reason: str | None = None) -> None:
        super().__init__(f"cannot {operation} job {job_id}: {reason or f'it is {status}'}")
        self.job_id = job_id
        self.status = status
        self.operation = operation


class DatabaseUnavailable(AiojobsPgError, ConnectionError):
    """The database could not be reached, or the connection to it was lost during the call.

    Raised by the app's calls (enqueue, the management calls) during an outage: a failover,
    a restart, ``pg_terminate_backend``, a network failure. The message names the cause;
    the driver's exception is ``__cause__``. Before raising it, a call on the app's own
    connections runs its statement again on a fresh connection when that cannot repeat a
    write (the statement is a read, or the dead connection refused it before sending), so
    this error means the database is still out of reach, or that a write's outcome is
    unknown. A :class:`ConnectionError` (an :class:`OSError`) too.

    ``operation`` names the statement. ``may_have_run`` is True when a write was sent and its
    connection lost before the answer came: it may have taken effect. After an enqueue, the
    job may then exist; look before enqueueing it again (a ``dedup_key`` makes the retry
    safe). When False, nothing was written.
    """

    def __init__(self, message: str, *, operation: str, may_have_run: bool) -> None:
        super().__init__(message)
        self.operation = operation
        self.may_have_run = may_have_run


class Retry(Exception):
    """Raise from a handler to retry the job later.

    The attempt counts against ``max_attempts``; ``after`` (seconds or a
    ``timedelta``) overrides the backoff for this retry.
    """

    def __init__(self, after: float | timedelta | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.after = after.total_seconds() if isinstance(after, timedelta) else after
        self.reason = reason


class Cancel(Exception):
    """Raise from a handler to stop the job for good: it becomes ``cancelled``."""

    def __init__(self, reason: str = "cancelled by handler") -> None:
        super().__init__(reason)
        self.reason = reason


class Fail(Exception):
    """Raise from a handler to fail the job now, whatever attempts are left: it becomes ``failed`` (the
    dead letter; a recurring job moves on to its next tick), with ``Fail: <reason>`` as its error.

    For an error that trying again cannot fix (the webhook deliveries fail so on a 4xx answer).
    """

    def __init__(self, reason: str = "failed by handler") -> None:
        super().__init__(reason)
        self.reason = reason
