"""aiojobs_pg: asyncio background jobs stored in PostgreSQL.

Public names only; see ``docs/architecture.md`` for how the pieces fit.
"""

from .app import App
from .enqueue import JobBatch
from .errors import (
    AiojobsPgError,
    Cancel,
    ConfigurationError,
    InvalidSchedule,
    JobNotFound,
    JobStateError,
    Retry,
    UnknownHandler,
    ValidationError,
)
from .executor import Backoff, JobContext
from .models import Job, JobStatus, Run, RunStatus

__all__ = [
    "AiojobsPgError",
    "App",
    "Backoff",
    "Cancel",
    "ConfigurationError",
    "InvalidSchedule",
    "Job",
    "JobBatch",
    "JobContext",
    "JobNotFound",
    "JobStateError",
    "JobStatus",
    "Retry",
    "Run",
    "RunStatus",
    "UnknownHandler",
    "ValidationError",
]
