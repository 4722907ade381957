"""The ledger: one row per handler execution, and the counts the scenarios assert on.

``ledger(job_id, attempt, worker, pid, run tstzrange, ended)``: the ``record`` handler
of ``tests/chaos/apps/worker.py`` inserts its row with an open range when it starts
and closes the range when it ends (``ended``: done, failed or cancelled). The
exclusion constraint ``EXCLUDE USING gist (job_id WITH =, run WITH &&)`` makes a
second run of a job that overlaps the first fail loudly at its insert: the handler
records it in ``ledger_conflicts`` and raises. A process that dies (``kill -9``,
``os._exit``) leaves its rows open: the test closes them at the time it saw the
process gone (:meth:`Ledger.close_dead`), which is after the run really stopped.

``btree_gist`` provides the ``=`` operator class for ``bigint``; where it cannot be
installed, the constraint uses ``int8range(job_id, job_id, '[]') WITH &&`` instead,
which needs no extension and excludes exactly the same pairs. The overlap count of
:meth:`Ledger.summary` is also computed by a query, independently of the constraint.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg


async def ensure_btree_gist(conn: Any) -> bool:
    """Install btree_gist if the server has it (database-wide, idempotent); False if unavailable."""
    available = await conn.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'btree_gist'")
    if not available:
        return False
    if await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'btree_gist'"):
        return True
    # Two sessions creating it at once: one wins, the other sees a duplicate; both are fine.
    with contextlib.suppress(asyncpg.UniqueViolationError, asyncpg.DuplicateObjectError,
                             asyncpg.InsufficientPrivilegeError):
        await conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    return bool(await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'btree_gist'"))


@dataclass
class Summary:
    """What the ledger says about a set of jobs."""

    jobs: int
    runs: int
    done_runs: int
    open_runs: int
    #: jobs with no run that ended normally, or whose row is not ``completed`` (``lost``)
    lost: list[int] = field(default_factory=list)
    #: pairs of runs of one job whose time ranges overlap (query, independent of the constraint)
    overlaps: int = 0
    #: runs refused by the exclusion constraint (recorded by the handler before it raised)
    conflicts: int = 0
    #: jobs whose completion in the history does not match a run that ended normally
    mismatched: list[int] = field(default_factory=list)
    #: number of runs per job -> number of jobs
    runs_histogram: dict[int, int] = field(default_factory=dict)

    @property
    def double_runs(self) -> int:
        return self.overlaps + self.conflicts

    def figures(self) -> dict[str, Any]:
        return {"jobs": self.jobs, "runs": self.runs, "lost": len(self.lost), "concurrent_double_runs":
                self.double_runs, "overlapping_pairs": self.overlaps, "refused_by_constraint": self.conflicts,
                "runs_per_job": {str(k): v for k, v in sorted(self.runs_histogram.items())}}


class Ledger:
    """The ledger of one schema."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.table = f"{schema}.ledger"
        self.conflicts = f"{schema}.ledger_conflicts"
        self.constraint = ""

    async def create(self, conn: Any) -> str:
        """Create the tables; returns how overlaps are excluded (for the report)."""
        if await ensure_btree_gist(conn):
            exclude = "job_id WITH =, run WITH &&"
            self.constraint = "btree_gist: EXCLUDE (job_id WITH =, run WITH &&)"
        else:
            exclude = "int8range(job_id, job_id, '[]') WITH &&, run WITH &&"
            self.constraint = "no btree_gist: EXCLUDE (int8range(job_id, job_id, '[]') WITH &&, run WITH &&)"
        await conn.execute(f"""
            CREATE TABLE {self.table} (
                job_id bigint NOT NULL, attempt int NOT NULL, worker text NOT NULL, pid int NOT NULL,
                run tstzrange NOT NULL, ended text,
                EXCLUDE USING gist ({exclude}));
            CREATE TABLE {self.conflicts} (
                job_id bigint, attempt int, worker text, pid int, started_at timestamptz, others text,
                at timestamptz NOT NULL DEFAULT clock_timestamp())""")
        return self.constraint

    async def close_dead(self, db: Any, pid: int, at: datetime | None = None) -> int:
        """Close the open runs of a process that is gone, at ``at`` (default: now); returns how many."""
        status = await db.execute(
            f"UPDATE {self.table} SET ended = 'killed', "
            "run = tstzrange(lower(run), GREATEST(lower(run), COALESCE($2, clock_timestamp()))) "
            "WHERE pid = $1 AND upper_inf(run)", pid, at)
        return int(status.split()[-1])

    async def summary(self, db: Any, job_ids: list[int] | None = None) -> Summary:
        """Counts over ``job_ids`` (default: every job of the schema)."""
        s = self.schema
        ids = job_ids if job_ids is not None else [r["id"] for r in await db.fetch(f"SELECT id FROM {s}.all_jobs")]
        row = await db.fetchrow(
            f"SELECT count(*) AS runs, count(*) FILTER (WHERE ended = 'done') AS done, "
            f"count(*) FILTER (WHERE upper_inf(run)) AS open FROM {self.table} WHERE job_id = ANY($1)", ids)
        # Lost: not completed, or gone altogether, or without a run that ended normally. Set operations,
        # not joins: their plan stays linear whatever the (stale) statistics of the tables say.
        lost = [r["id"] for r in await db.fetch(
            f"""SELECT id FROM unnest($1::bigint[]) AS i(id)
                EXCEPT (SELECT id FROM {s}.all_jobs WHERE status = 'completed'
                        INTERSECT SELECT job_id FROM {self.table} WHERE ended = 'done')
                ORDER BY id""", ids)]
        overlaps = await db.fetchval(
            f"""SELECT count(*) FROM {self.table} a JOIN {self.table} b
                ON a.job_id = b.job_id AND a.ctid < b.ctid AND a.run && b.run
                WHERE a.job_id = ANY($1)""", ids)
        conflicts = await db.fetchval(f"SELECT count(*) FROM {self.conflicts} WHERE job_id = ANY($1)", ids)
        # The history's completed run must be a run that ended normally, by the same worker and attempt.
        mismatched = [r["job_id"] for r in await db.fetch(
            f"""SELECT r.job_id FROM {s}.job_runs r WHERE r.job_id = ANY($1) AND r.status = 'completed'
                AND NOT EXISTS (SELECT 1 FROM {self.table} l WHERE l.job_id = r.job_id AND l.attempt = r.attempt
                                AND l.worker = r.worker_id AND l.ended = 'done')""", ids)]
        hist = {r["n"]: r["jobs"] for r in await db.fetch(
            f"""SELECT n, count(*) AS jobs FROM (
                    SELECT j.id, count(l.job_id) AS n FROM unnest($1::bigint[]) AS j(id)
                    LEFT JOIN {self.table} l ON l.job_id = j.id GROUP BY j.id) x
                GROUP BY n""", ids)}
        return Summary(jobs=len(ids), runs=row["runs"], done_runs=row["done"], open_runs=row["open"], lost=lost,
                       overlaps=overlaps, conflicts=conflicts, mismatched=mismatched, runs_histogram=hist)
