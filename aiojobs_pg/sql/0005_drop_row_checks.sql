-- The CHECK constraints go. PostgreSQL 15 rebuilds a table's CHECK expressions from their stored
-- text at every statement that writes a row (parse, plan, compile), and for these six that was
-- ~25 us of server CPU per single enqueue (about a sixth of it) and ~5% of a drain's server CPU.
-- Through this package, these columns are written only by its own statements, with literals or
-- with values that enqueue and the admin API validate first (status, misfire and overlap from
-- closed sets; attempts, max_attempts and timeout range-checked), so the checks caught nothing
-- its API lets through. SQL written by hand against the table is no longer checked for them.
-- NOT NULL stays: it costs nothing per statement.
ALTER TABLE {schema}.jobs
    DROP CONSTRAINT IF EXISTS jobs_status_check,
    DROP CONSTRAINT IF EXISTS jobs_attempts_check,
    DROP CONSTRAINT IF EXISTS jobs_max_attempts_check,
    DROP CONSTRAINT IF EXISTS jobs_timeout_check,
    DROP CONSTRAINT IF EXISTS jobs_misfire_check,
    DROP CONSTRAINT IF EXISTS jobs_overlap_check;
ALTER TABLE {schema}.job_runs DROP CONSTRAINT IF EXISTS job_runs_status_check;
