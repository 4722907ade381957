-- A job's progress, as its running handler reports it (0 to 1), and a message to go with it.
-- A completed one-off job's history row keeps neither: it reads as NULL (the status says it is done).
-- No CHECK on the range: a CHECK costs every insert (docs/performance.md, "Row CHECK constraints");
-- the value is validated where it is set.
ALTER TABLE {schema}.jobs
    ADD COLUMN progress         real,
    ADD COLUMN progress_message text;

CREATE OR REPLACE VIEW {schema}.all_jobs AS
SELECT id, name, handler, data, queue, priority, schedule, timezone, status, attempts, max_attempts, timeout,
       last_run_at, next_run_at, last_error, result, dedup_key, lease_expires_at, worker_id, created_at, updated_at,
       periodic_key, misfire, overlap, tick_at, progress, progress_message
FROM {schema}.jobs
UNION ALL
SELECT job_id, name, handler, data, queue, priority, NULL, NULL, 'completed', attempt, max_attempts, timeout,
       last_run_at, COALESCE(scheduled_at, created_at), last_error, result, dedup_key, NULL, worker_id, created_at,
       COALESCE(completed_at, created_at), NULL, 'skip', 'wait', NULL, NULL::real, NULL
FROM {schema}.job_runs
WHERE handler IS NOT NULL;
