-- Uniqueness over a window, and backoff per job (issue 21).
--
-- backoff: the job's own retry backoff (enqueue(backoff=)), as {"base", "factor", "cap", "jitter"};
-- NULL (the usual case, no space) leaves it to the handler's, else the app's. The history row of a
-- completed job keeps it, so that a completed job run again (trigger) retries as it was told to.
ALTER TABLE {schema}.jobs ADD COLUMN backoff jsonb;
ALTER TABLE {schema}.job_runs ADD COLUMN backoff jsonb;

-- The dedup index covers every job with a key, not only live ones, so that an enqueue with a window
-- finds a failed or cancelled job with the key by index too, with no second partial index on jobs (each
-- costs every insert its predicate: docs/architecture.md, "Known limits"). It stays what it was for
-- live jobs: at most one pending or running job per key (they all index as (key, 0)); a job in any
-- other status indexes as (key, its id), unique anyway. ON CONFLICT names it by these expressions.
DROP INDEX {schema}.jobs_dedup_idx;
CREATE UNIQUE INDEX jobs_dedup_idx ON {schema}.jobs
    (dedup_key, (CASE WHEN status IN ('pending', 'running') THEN 0 ELSE id END))
    WHERE dedup_key IS NOT NULL;

-- Completed jobs with a key, by key and creation time (the history's other rows have no key, so they
-- are not in it: a completion without a key evaluates the predicate and writes nothing more).
CREATE INDEX job_runs_dedup_idx ON {schema}.job_runs (dedup_key, created_at) WHERE dedup_key IS NOT NULL;

-- The job holding each key of an enqueue with a window (keys[i] with windows[i] seconds; NULL where
-- either is NULL): a pending or running job with the key, else the newest job with the key created
-- within the window, whatever its status (completed ones from their history rows); NULL when none.
--
-- Exact under concurrency: each distinct key is locked first (a transaction-level advisory lock, held
-- until the enqueue's transaction ends, taken in key order so that two batches cannot deadlock), and
-- only then looked up. A VOLATILE function's statements each see what committed before them, so the
-- lookups see every job an enqueue that held the lock before created, even one that completed since
-- (its completion moves it into the history in one statement). In READ COMMITTED, the default.
CREATE FUNCTION {schema}.dedup_holders(keys text[], windows float8[]) RETURNS bigint[]
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    key     text;
    holders bigint[] := '{}';
    found   bigint;
BEGIN
    FOR key IN
        SELECT DISTINCT k FROM unnest(keys, windows) AS u(k, w) WHERE k IS NOT NULL AND w IS NOT NULL ORDER BY k
    LOOP
        PERFORM pg_advisory_xact_lock(hashtext('aiojobs_pg:dedup:{schema}'), hashtext(key));
    END LOOP;
    FOR i IN 1 .. coalesce(cardinality(keys), 0) LOOP
        found := NULL;
        IF keys[i] IS NOT NULL AND windows[i] IS NOT NULL THEN
            SELECT id INTO found FROM {schema}.jobs
            WHERE dedup_key = keys[i]
              AND (status IN ('pending', 'running') OR created_at >= now() - make_interval(secs => windows[i]))
            ORDER BY status IN ('pending', 'running') DESC, created_at DESC, id DESC
            LIMIT 1;
            IF found IS NULL THEN
                SELECT job_id INTO found FROM {schema}.job_runs
                WHERE dedup_key = keys[i] AND created_at >= now() - make_interval(secs => windows[i])
                ORDER BY created_at DESC, job_id DESC
                LIMIT 1;
            END IF;
        END IF;
        holders := array_append(holders, found);
    END LOOP;
    RETURN holders;
END $$;

CREATE OR REPLACE VIEW {schema}.all_jobs AS
SELECT id, name, handler, data, queue, priority, schedule, timezone, status, attempts, max_attempts, timeout,
       last_run_at, next_run_at, last_error, result, dedup_key, lease_expires_at, worker_id, created_at, updated_at,
       periodic_key, misfire, overlap, tick_at, progress, progress_message,
       parents, waiting_for, on_parent_failure, concurrency_key,
       backoff
FROM {schema}.jobs
UNION ALL
SELECT job_id, name, handler, data, queue, priority, NULL, NULL, 'completed', attempt, max_attempts, timeout,
       last_run_at, COALESCE(scheduled_at, created_at), last_error, result, dedup_key, NULL, worker_id, created_at,
       COALESCE(completed_at, created_at), NULL, 'skip', 'wait', NULL, NULL::real, NULL,
       NULL::bigint[], NULL::bigint[], NULL::text, concurrency_key,
       backoff
FROM {schema}.job_runs
WHERE handler IS NOT NULL;
