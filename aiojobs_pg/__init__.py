"""aiojobs_pg: asyncio background jobs stored in PostgreSQL.

Public names only; see ``docs/architecture.md`` for how the pieces fit.
"""

from .app import App
from .enqueue import JobBatch
from .errors import (
    AiojobsPgError,
    Cancel,
    ConfigurationError,
    DataTooLarge,
    InvalidSchedule,
    JobNotFound,
    JobStateError,
    Retry,
    UnknownHandler,
    ValidationError,
)
from .executor import Backoff, JobContext
from .models import Job, JobStatus, Run, RunStatus
from .schedules import next_run_times

__all__ = [
    "AiojobsPgError",
    "App",
    "Backoff",
    "Cancel",
    "ConfigurationError",
    "DataTooLarge",
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
    "next_run_times",
]
