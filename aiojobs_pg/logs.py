"""How aiojobs_pg logs, and the logging setup of the command line.

The library logs structlog events and configures nothing, on import or when
embedded. Each module's logger (:func:`get_logger`) follows the application:

* if the application configured structlog, its processors, level and output apply;
* if not, each event goes to the standard library logger of the same name
  (``aiojobs_pg.worker``, ``aiojobs_pg.executor``, ...) as one ``event key=value``
  line, so ``logging``'s levels and handlers decide: by default warnings and
  errors reach stderr and debug and info events are dropped before they are
  rendered. structlog's own default (print every level to stdout) is never used.

:func:`configure_logging` is the one-call setup of ``python -m aiojobs_pg``:
key/value lines for people, or JSON lines for log collectors, on stderr (stdout
stays free for command output).
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


def _to_stdlib(logger: Any, method: str, event_dict: structlog.typing.EventDict) -> tuple[tuple[str], dict[str, Any]]:
    """Render ``event key=value ...`` as the message; a traceback is left to ``logging`` to format."""
    kwargs = {key: event_dict.pop(key) for key in ("exc_info", "stack_info") if event_dict.get(key)}
    event = str(event_dict.pop("event", ""))
    rest = _LOGFMT(logger, method, event_dict) if event_dict else ""
    return ((f"{event} {rest}" if rest else event,), kwargs)


_LOGFMT = structlog.processors.LogfmtRenderer()
# filter_by_level first: an event below the stdlib logger's level costs no rendering.
_STDLIB_PROCESSORS: list[Any] = [structlog.stdlib.filter_by_level, _to_stdlib]


class _LibraryLogger:
    """A module's logger: the application's structlog setup if it has one, else stdlib ``logging``.

    Resolved at each use (``bind`` resolves once, for the bound logger it returns),
    so configuring structlog after importing aiojobs_pg takes effect.
    """

    __slots__ = ("_fallback", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._fallback: Any = None

    def _resolve(self) -> Any:
        if structlog.is_configured():
            return structlog.get_logger(self._name)
        if self._fallback is None:
            self._fallback = structlog.stdlib.BoundLogger(logging.getLogger(self._name), _STDLIB_PROCESSORS, {})
        return self._fallback

    def bind(self, **values: Any) -> Any:
        """A logger with ``values`` bound, resolved now."""
        return self._resolve().bind(**values)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resolve(), name)


def get_logger(name: str) -> Any:
    """The logger of the aiojobs_pg module ``name`` (see the module docstring for where events go)."""
    return _LibraryLogger(name)


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
