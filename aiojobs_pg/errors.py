"""Exception tree of aiojobs_pg, and the two signals a handler may raise.

Everything the library raises on bad input derives from :class:`AiojobsPgError`
(and from :class:`ValueError` where the problem is a bad value), so callers can
catch one base class.
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


class JobStateError(AiojobsPgError):
    """The operation does not apply to the job in its current status."""

    def __init__(self, job_id: int, status: str, operation: str, reason: str | None = None) -> None:
        super().__init__(f"cannot {operation} job {job_id}: {reason or f'it is {status}'}")
        self.job_id = job_id
        self.status = status
        self.operation = operation


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
