-- Tracing across the queue (issue 22; aiojobs_pg.tracing, docs/tracing.md).
--
-- trace_context: the creation context of the job when it was enqueued with tracing on, the carrier the
-- OpenTelemetry propagator wrote as a JSON object (W3C: {"traceparent": "00-…", "tracestate": …}); the
-- claim returns it so that each run's span links to the enqueue's. NULL (the usual case, no space) when
-- tracing is off. The history does not keep it: a completed job's runs are over.
ALTER TABLE {schema}.jobs ADD COLUMN trace_context text;

-- The view of every job gains the column (at the end: CREATE OR REPLACE VIEW only adds columns there);
-- a completed job's reads as NULL. Otherwise as in 0015.
CREATE OR REPLACE VIEW {schema}.all_jobs AS
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
