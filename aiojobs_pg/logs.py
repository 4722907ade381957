"""Logging setup for the command line (and for applications that want the same).

aiojobs_pg logs through structlog and never configures it on import: a library
leaves that to the application. :func:`configure_logging` is a one-call setup
used by ``python -m aiojobs_pg``: key/value lines for people, or JSON lines for
log collectors, written to stderr (stdout stays free for command output).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

LEVELS = ("debug", "info", "warning", "error", "critical")

ENV_LEVEL = "AIOJOBS_PG_LOG_LEVEL"
ENV_JSON = "AIOJOBS_PG_LOG_JSON"


def parse_level(level: str | int) -> int:
    """A level name (any case) or number as a :mod:`logging` level; ValueError otherwise."""
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    if isinstance(level, str) and level.strip().lower() in LEVELS:
        return int(getattr(logging, level.strip().upper()))
    raise ValueError(f"invalid log level {level!r}; expected one of {', '.join(LEVELS)}")


def env_json() -> bool:
    """Whether ``AIOJOBS_PG_LOG_JSON`` asks for JSON lines (1, true, yes, on)."""
    return os.environ.get(ENV_JSON, "").strip().lower() in {"1", "true", "yes", "on"}


def configure_logging(level: str | int = "INFO", *, json: bool = False) -> None:
    """Configure structlog: ``level`` and above go to stderr, with ISO 8601 UTC timestamps.

    Loggers are filtering bound loggers, so calls below ``level`` are no-ops that
    cost a method call. Call it once at start-up, before the first log call:
    loggers are cached on first use.
    """
    threshold = parse_level(level)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if json:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        colors = sys.stderr.isatty() and "NO_COLOR" not in os.environ
        processors.append(structlog.dev.ConsoleRenderer(colors=colors))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        context_class=dict,
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
