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
    DatabaseUnavailable,
    DataTooLarge,
    InvalidSchedule,
    JobNotFound,
    JobStateError,
    Retry,
    UnknownHandler,
    ValidationError,
)
from .executor import Backoff, JobContext
from .models import ClaimedJob, Job, JobStatus, Run, RunStatus
from .schedules import next_run_times
from .waiting import JobCancelled, JobFailed
from .worker import Worker, WorkerOverrides, WorkerSettings

__all__ = [
    "UNSET",
    "Admin",
    "AiojobsPgError",
    "App",
    "Backoff",
    "Cancel",
    "ClaimedJob",
    "ConfigurationError",
    "DataTooLarge",
    "DatabaseUnavailable",
    "InvalidSchedule",
    "Job",
    "JobBatch",
    "JobCancelled",
    "JobContext",
    "JobFailed",
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
