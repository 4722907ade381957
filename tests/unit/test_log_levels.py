"""The worker skips building per-job debug events when its logger would drop them."""

from __future__ import annotations

import logging

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
