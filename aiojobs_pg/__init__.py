"""aiojobs_pg: asyncio background jobs stored in PostgreSQL.

Public names only; see ``docs/architecture.md`` for how the pieces fit.
"""

from .admin import UNSET, Admin, Page, QueueSettings, Unset
from .app import App
from .enqueue import JobBatch
from .errors import (
    AiojobsPgError,
    Cancel,
    ConfigurationError,
    DatabaseUnavailable,
    DataTooLarge,
    Fail,
    InvalidSchedule,
    JobNotFound,
    JobStateError,
    Retry,
    UnknownHandler,
    ValidationError,
    WebhookNotFound,
)
from .executor import Backoff, JobContext
from .models import ClaimedJob, Job, JobStatus, Run, RunStatus
from .schedules import next_run_times
from .validation import RateLimit
from .waiting import JobCancelled, JobFailed
from .webhooks import Webhook, WebhookOptions
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
    "Fail",
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
    "QueueSettings",
    "RateLimit",
    "Retry",
    "Run",
    "RunStatus",
    "UnknownHandler",
    "Unset",
    "ValidationError",
    "Webhook",
    "WebhookNotFound",
    "WebhookOptions",
    "Worker",
    "WorkerOverrides",
    "WorkerSettings",
    "next_run_times",
]
