-- The row CHECK constraints dropped by 0005 come back: a table that accepts an unknown status or a
-- negative attempt count, from SQL written by hand or a bug of ours, is a reliability defect, and
-- their measured cost is under the 5% of the single enqueue that would have to be shown to keep them
-- out (docs/performance.md, "Row CHECK constraints"). job_runs' check is added NOT VALID: it holds
-- for every row written from now on without scanning a history that may have millions of rows,
-- all of them written by this package's own statements.
ALTER TABLE {schema}.jobs
    ADD CONSTRAINT jobs_status_check
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    ADD CONSTRAINT jobs_attempts_check CHECK (attempts >= 0),
    ADD CONSTRAINT jobs_max_attempts_check CHECK (max_attempts >= 1),
    ADD CONSTRAINT jobs_timeout_check CHECK (timeout > 0),
    ADD CONSTRAINT jobs_misfire_check CHECK (misfire IN ('skip', 'all')),
    ADD CONSTRAINT jobs_overlap_check CHECK (overlap IN ('wait', 'skip'));
ALTER TABLE {schema}.job_runs
    ADD CONSTRAINT job_runs_status_check
        CHECK (status IN ('completed', 'failed', 'cancelled', 'released')) NOT VALID;
