"""aiojobs_pg: asyncio background jobs stored in PostgreSQL.

Public names only; see ``docs/architecture.md`` for how the pieces fit.
"""

from .admin import UNSET, Admin, Page, Unset
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
from .worker import Worker, WorkerOverrides, WorkerSettings

__all__ = [
    "UNSET",
    "Admin",
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
    "Page",
    "Retry",
    "Run",
    "RunStatus",
    "UnknownHandler",
    "Unset",
    "ValidationError",
    "Worker",
    "WorkerOverrides",
    "WorkerSettings",
    "next_run_times",
]
