-- Statuses as domains over text: the database refuses an unknown status (SQLSTATE 23514, "value for domain
-- <schema>.job_status violates check constraint"), whoever writes it, where migration 0005 left a text column
-- that took anything. A domain is text with a check: it compares, sorts and reads as text, so the statements
-- of an earlier release, and SQL of one's own that compares the status with a text value, keep working on
-- this schema (old and new workers run side by side during a deploy: docs/deployment.md). An enum would have
-- broken them: "operator does not exist: job_status = text". Its check is not one of the table's CHECK
-- constraints, which PostgreSQL rebuilds at every statement that writes a row (docs/performance.md, "Row
-- CHECK constraints"): the domain's is kept with the type. The values are those of JobStatus and RunStatus
-- (models.py); a status added later is a migration of its own (ALTER DOMAIN ... DROP CONSTRAINT, ADD
-- CONSTRAINT), in the same release as the code that writes it.
--
-- Applying it: each table is rewritten, under its ACCESS EXCLUSIVE lock (held until the migration commits;
-- workers and enqueues wait meanwhile), and its indexes rebuilt; the time it takes at 10^5 jobs and 10^6
-- history rows is in docs/performance.md. Prune the history first on a large installation.
CREATE DOMAIN {schema}.job_status AS text
    CHECK (VALUE IN ('waiting', 'pending', 'running', 'completed', 'failed', 'cancelled'));
CREATE DOMAIN {schema}.run_status AS text
    CHECK (VALUE IN ('completed', 'failed', 'cancelled', 'released'));

-- What names jobs.status and keeps ALTER COLUMN TYPE from running: the view (dropped, created again below
-- as it was; a grant made on it by hand, rather than by default privileges, must be made again) and the
-- triggers whose condition reads the status. The functions read it at run time, as text; the indexes that
-- name it are rebuilt by the ALTER from their definitions, which read the same on the domain.
DROP VIEW {schema}.all_jobs;
DROP TRIGGER jobs_settle_dependents ON {schema}.jobs;
DROP TRIGGER jobs_release_dependents ON {schema}.jobs;
DROP TRIGGER jobs_webhooks_ended ON {schema}.jobs;

ALTER TABLE {schema}.jobs ALTER COLUMN status TYPE {schema}.job_status;
ALTER TABLE {schema}.job_runs ALTER COLUMN status TYPE {schema}.run_status;

-- The triggers, as migrations 0012 and 0014 made them.
CREATE TRIGGER jobs_settle_dependents AFTER UPDATE OF status ON {schema}.jobs
    FOR EACH ROW WHEN (NEW.has_dependents AND NEW.status IN ('completed', 'failed', 'cancelled')
                       AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION {schema}.settle_dependents();
CREATE TRIGGER jobs_release_dependents AFTER DELETE ON {schema}.jobs
    FOR EACH ROW WHEN (OLD.has_dependents AND OLD.status = 'running')
    EXECUTE FUNCTION {schema}.settle_dependents();
CREATE TRIGGER jobs_webhooks_ended AFTER UPDATE OF status ON {schema}.jobs
    FOR EACH ROW WHEN (NEW.status IN ('failed', 'cancelled') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION {schema}.webhook_job_ended();

-- The view of every job, as migration 0016 left it (its status column is text: the union of the domain
-- with a completed job's 'completed').
CREATE VIEW {schema}.all_jobs AS
SELECT id, name, handler, data, queue, priority, schedule, timezone, status, attempts, max_attempts, timeout,
       last_run_at, next_run_at, last_error, result, dedup_key, lease_expires_at, worker_id, created_at, updated_at,
       periodic_key, misfire, overlap, tick_at, progress, progress_message,
       parents, waiting_for, on_parent_failure, concurrency_key,
       backoff, trace_context
FROM {schema}.jobs
UNION ALL
SELECT job_id, name, handler, data, queue, priority, NULL, NULL, 'completed', attempt, max_attempts, timeout,
       last_run_at, COALESCE(scheduled_at, created_at), last_error, result, dedup_key, NULL, worker_id, created_at,
       COALESCE(completed_at, created_at), NULL, 'skip', 'wait', NULL, NULL::real, NULL,
       NULL::bigint[], NULL::bigint[], NULL::text, concurrency_key,
       backoff, NULL::text
FROM {schema}.job_runs
WHERE handler IS NOT NULL;
