-- A one-off job that completes leaves the hot table: its jobs row is deleted and the history row
-- of its last run carries what the job was (handler, data, queue, ...). Completing thus writes one
-- row (the history row) instead of a new version of the jobs row, with its primary-key entry, plus
-- the history row; and jobs holds only work that is live or parked (pending, running, failed,
-- cancelled, recurring). In every other history row these columns are NULL: "handler IS NOT NULL"
-- marks the row that holds a completed job, and a job id is in jobs or in such a row, never both.
-- claim is the run's claim token (jobs.claims as its claim set it): a completed job that is run
-- again starts from it, so that tokens never repeat.
ALTER TABLE {schema}.job_runs
    ADD COLUMN claim        bigint,
    ADD COLUMN handler      text,
    ADD COLUMN name         text,
    ADD COLUMN data         jsonb,
    ADD COLUMN queue        text,
    ADD COLUMN priority     integer,
    ADD COLUMN max_attempts integer,
    ADD COLUMN timeout      double precision,
    ADD COLUMN dedup_key    text,
    ADD COLUMN last_error   text,
    ADD COLUMN created_at   timestamptz,
    ADD COLUMN last_run_at  timestamptz;

-- Completed one-off jobs already stored move the same way: into the row of their last run, or into a
-- new row where none was recorded (history off, or pruned). A completed job with a schedule (one made
-- recurring after it completed) stays where it is: history rows have no schedule.
WITH done AS (
    DELETE FROM {schema}.jobs WHERE status = 'completed' AND schedule IS NULL RETURNING *
), last_run AS (
    SELECT DISTINCT ON (r.job_id) r.id, r.job_id
    FROM {schema}.job_runs r JOIN done d ON d.id = r.job_id
    ORDER BY r.job_id, r.id DESC
), attached AS (
    UPDATE {schema}.job_runs r
    SET claim = d.claims, handler = d.handler, name = d.name, data = d.data, queue = d.queue,
        priority = d.priority, max_attempts = d.max_attempts, timeout = d.timeout, dedup_key = d.dedup_key,
        last_error = d.last_error, created_at = d.created_at, last_run_at = d.last_run_at,
        result = COALESCE(r.result, d.result)
    FROM last_run l JOIN done d ON d.id = l.job_id
    WHERE r.id = l.id
)
INSERT INTO {schema}.job_runs
    (job_id, attempt, worker_id, status, started_at, completed_at, result, scheduled_at, claim, handler, name,
     data, queue, priority, max_attempts, timeout, dedup_key, last_error, created_at, last_run_at)
SELECT d.id, d.attempts, d.worker_id, 'completed', d.last_run_at, d.updated_at, d.result, d.next_run_at, d.claims,
       d.handler, d.name, d.data, d.queue, d.priority, d.max_attempts, d.timeout, d.dedup_key, d.last_error,
       d.created_at, d.last_run_at
FROM done d
WHERE NOT EXISTS (SELECT 1 FROM last_run l WHERE l.job_id = d.id);

-- Every job, wherever it is kept, as the columns of jobs: for the admin's reads of single jobs and its
-- counts, and for SQL of your own.
CREATE VIEW {schema}.all_jobs AS
SELECT id, name, handler, data, queue, priority, schedule, timezone, status, attempts, max_attempts, timeout,
       last_run_at, next_run_at, last_error, result, dedup_key, lease_expires_at, worker_id, created_at, updated_at,
       periodic_key, misfire, overlap, tick_at
FROM {schema}.jobs
UNION ALL
SELECT job_id, name, handler, data, queue, priority, NULL, NULL, 'completed', attempt, max_attempts, timeout,
       last_run_at, COALESCE(scheduled_at, created_at), last_error, result, dedup_key, NULL, worker_id, created_at,
       COALESCE(completed_at, created_at), NULL, 'skip', 'wait', NULL
FROM {schema}.job_runs
WHERE handler IS NOT NULL;
