"""Where the library's log events go, and the worker skipping per-job debug events nobody reads."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import structlog

from aiojobs_pg.worker import _enabled


def test_filtering_logger_reports_its_threshold() -> None:
    logger = structlog.make_filtering_bound_logger(logging.WARNING)(structlog.PrintLogger(), [], {})
    assert not _enabled(logger, logging.DEBUG)
    assert _enabled(logger, logging.ERROR)


def test_stdlib_logger_reports_its_threshold() -> None:
    std = logging.getLogger("aiojobs_pg.test_log_levels")
    std.setLevel(logging.INFO)
    assert not _enabled(std, logging.DEBUG)
    assert _enabled(std, logging.INFO)


def test_a_logger_that_cannot_tell_is_assumed_to_log() -> None:
    assert _enabled(object(), logging.DEBUG)


def _run(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter: structlog's configuration is process-wide."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=60, check=True)


def test_unconfigured_library_is_quiet_below_warning() -> None:
    # structlog's own default prints every level to stdout; the library must not inherit it.
    out = _run("""
        import logging
        from aiojobs_pg.logs import get_logger
        from aiojobs_pg.worker import _enabled
        log = get_logger("aiojobs_pg.worker").bind(worker_id="w1")
        assert not _enabled(log, logging.DEBUG)   # the per-job debug event is not even built
        log.debug("job_completed", job_id=1)
        log.info("worker_starting", queues=["default"])
        log.warning("lease_renewal_failed", error="boom")
    """)
    assert out.stdout == ""
    assert out.stderr.strip() == "lease_renewal_failed worker_id=w1 error=boom"


def test_unconfigured_library_follows_stdlib_logging() -> None:
    out = _run("""
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(levelname)s %(message)s")
        from aiojobs_pg.logs import get_logger
        log = get_logger("aiojobs_pg.executor")
        log.debug("hidden")
        log.info("job_retrying", job_id=7, error="x y")
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("handler_crashed")
    """)
    lines = out.stdout.splitlines()
    assert lines[:2] == ['aiojobs_pg.executor INFO job_retrying job_id=7 error="x y"',
                         "aiojobs_pg.executor ERROR handler_crashed"]
    assert "ZeroDivisionError" in out.stdout  # the traceback is left to logging's formatter


def test_structlog_configured_after_import_takes_over() -> None:
    out = _run("""
        import logging, sys, structlog
        from aiojobs_pg.logs import get_logger
        log = get_logger("aiojobs_pg.worker")
        structlog.configure(processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
                            wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
                            logger_factory=structlog.PrintLoggerFactory(sys.stdout))
        log.debug("job_completed", job_id=3)
    """)
    assert out.stdout.strip() == "event='job_completed' job_id=3"
