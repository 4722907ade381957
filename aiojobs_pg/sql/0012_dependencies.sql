-- Job dependencies: a job enqueued with after=[parents] waits (status 'waiting') until every parent
-- completed. The parents' side is a flag on their rows (has_dependents, NULL when none: no space, and
-- the triggers below test it before calling anything); the child's side is its parents (parents, for
-- display and ctx.parent_results), the ones it still waits for (waiting_for), and what it does when a
-- parent fails or is cancelled (on_parent_failure: NULL follows the parent, 'cancel', or 'run' anyway).
--
-- Everything happens in the transaction that ends the parent, whichever path ends it (a worker's
-- completion, a cancel, a rescue that fails it for good, a bulk action), through the triggers below, so
-- no dependent can be claimed early or left waiting. Why triggers and not steps of the completion:
-- docs/architecture.md, "Dependencies".
ALTER TABLE {schema}.jobs
    ADD COLUMN parents           bigint[],
    ADD COLUMN waiting_for       bigint[],
    ADD COLUMN on_parent_failure text,
    ADD COLUMN has_dependents    boolean;

-- The dependents of a parent that ended: only waiting jobs are in this index.
CREATE INDEX jobs_waiting_idx ON {schema}.jobs USING gin (waiting_for) WHERE status = 'waiting';

-- A new job with parents: flag each parent still in jobs (the row lock orders this insert against the
-- parent's end: if the parent is ending now, this waits, and finds it gone into its history), then look
-- for the others among completed jobs. A VOLATILE function's statements each see what committed before
-- them, so the history lookup sees a completion the update waited for. The job waits for the parents not
-- yet completed; with one that failed or was cancelled already, on_parent_failure applies at once.
CREATE FUNCTION {schema}.wait_for_parents() RETURNS trigger LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    found      bigint[];
    live       bigint[];
    recurring_id bigint;
    ended_id   bigint;
    ended      text;
    done       bigint[];
    missing    bigint;
BEGIN
    IF cardinality(NEW.parents) = 0 THEN
        NEW.parents := NULL;
        RETURN NEW;
    END IF;
    IF NEW.schedule IS NOT NULL THEN
        RAISE EXCEPTION 'a recurring job cannot wait for other jobs' USING ERRCODE = 'AJ001';
    END IF;
    WITH flagged AS (
        UPDATE {schema}.jobs p SET has_dependents = true
        WHERE p.id = ANY(NEW.parents)
        RETURNING p.id, p.status, p.schedule IS NOT NULL AS is_recurring
    )
    SELECT array_agg(id),
           array_agg(id) FILTER (WHERE status IN ('pending', 'running', 'waiting')),
           min(id) FILTER (WHERE is_recurring),
           (array_agg(id ORDER BY id) FILTER (WHERE status IN ('failed', 'cancelled')))[1],
           (array_agg(status ORDER BY id) FILTER (WHERE status IN ('failed', 'cancelled')))[1]
    INTO found, live, recurring_id, ended_id, ended
    FROM flagged;
    IF recurring_id IS NOT NULL THEN
        RAISE EXCEPTION 'job % is recurring: a job can only wait for one-off jobs', recurring_id
            USING ERRCODE = 'AJ001';
    END IF;
    SELECT array_agg(DISTINCT r.job_id) INTO done FROM {schema}.job_runs r
    WHERE r.job_id = ANY(NEW.parents) AND r.handler IS NOT NULL AND NOT r.job_id = ANY(COALESCE(found, '{}'));
    SELECT min(p) INTO missing FROM unnest(NEW.parents) AS p
    WHERE NOT p = ANY(COALESCE(found, '{}') || COALESCE(done, '{}'));
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'job % not found', missing USING ERRCODE = 'AJ001';
    END IF;
    IF ended IS NOT NULL AND NEW.on_parent_failure IS DISTINCT FROM 'run' THEN
        NEW.status := CASE WHEN NEW.on_parent_failure = 'cancel' THEN 'cancelled' ELSE ended END;
        NEW.last_error := format('parent job %s %s', ended_id, CASE ended WHEN 'failed' THEN 'failed'
                                                                           ELSE 'was cancelled' END);
    ELSIF cardinality(live) > 0 THEN
        NEW.status := 'waiting';
        NEW.waiting_for := live;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER jobs_wait_for_parents BEFORE INSERT ON {schema}.jobs
    FOR EACH ROW WHEN (NEW.parents IS NOT NULL) EXECUTE FUNCTION {schema}.wait_for_parents();

-- A parent ended: each dependent waiting for it stops waiting for it; one that waited for nothing else
-- becomes pending (due now at the earliest) and its queue's workers are woken. When the parent failed or
-- was cancelled, a dependent follows it (failed or cancelled, the reason in last_error), is cancelled
-- ('cancel'), or stops waiting for it as if it had completed ('run'). A dependent that ends this way ends
-- its own dependents the same way: its status change fires this trigger in turn.
CREATE FUNCTION {schema}.settle_dependents() RETURNS trigger LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    parent bigint := OLD.id;
    -- a worker's completion of a one-off job deletes its row into its history
    ended  text := CASE WHEN TG_OP = 'DELETE' THEN 'completed' ELSE NEW.status END;
BEGIN
    WITH settled AS (
        UPDATE {schema}.jobs c SET
            status = CASE
                WHEN ended <> 'completed' AND c.on_parent_failure IS DISTINCT FROM 'run'
                    THEN CASE WHEN c.on_parent_failure = 'cancel' THEN 'cancelled' ELSE ended END
                WHEN cardinality(array_remove(c.waiting_for, parent)) = 0 THEN 'pending'
                ELSE 'waiting' END,
            last_error = CASE
                WHEN ended <> 'completed' AND c.on_parent_failure IS DISTINCT FROM 'run'
                    THEN format('parent job %s %s', parent, CASE ended WHEN 'failed' THEN 'failed'
                                                                         ELSE 'was cancelled' END)
                ELSE c.last_error END,
            waiting_for = NULLIF(array_remove(c.waiting_for, parent), '{}'),
            next_run_at = greatest(c.next_run_at, now()),
            updated_at = now()
        WHERE c.status = 'waiting' AND c.waiting_for @> ARRAY[parent]
        RETURNING c.id, c.status, c.queue, c.next_run_at, c.awaited
    ), woken AS (
        SELECT pg_notify(TG_TABLE_SCHEMA || '_jobs', queue)
        FROM (SELECT DISTINCT queue FROM settled WHERE status = 'pending' AND next_run_at <= now()) q
    ), hinted AS (
        SELECT pg_notify(TG_TABLE_SCHEMA || '_control',
                         'due ' || extract(epoch FROM min(next_run_at) - now())::text || ' ' || queue)
        FROM settled WHERE status = 'pending' AND next_run_at > now() GROUP BY queue
    ), told AS (
        SELECT pg_notify(TG_TABLE_SCHEMA || '_control', 'done ' || id)
        FROM settled WHERE awaited AND status IN ('failed', 'cancelled')
    )
    SELECT (SELECT count(*) FROM woken) + (SELECT count(*) FROM hinted) + (SELECT count(*) FROM told)
    INTO parent;
    RETURN NULL;
END $$;

-- The row's own condition comes first: a job with no dependents (has_dependents NULL) calls nothing.
CREATE TRIGGER jobs_settle_dependents AFTER UPDATE OF status ON {schema}.jobs
    FOR EACH ROW WHEN (NEW.has_dependents AND NEW.status IN ('completed', 'failed', 'cancelled')
                       AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION {schema}.settle_dependents();
-- A running job's row is deleted only by its completion (a deletion by hand cancels it first).
CREATE TRIGGER jobs_release_dependents AFTER DELETE ON {schema}.jobs
    FOR EACH ROW WHEN (OLD.has_dependents AND OLD.status = 'running')
    EXECUTE FUNCTION {schema}.settle_dependents();

CREATE OR REPLACE VIEW {schema}.all_jobs AS
SELECT id, name, handler, data, queue, priority, schedule, timezone, status, attempts, max_attempts, timeout,
       last_run_at, next_run_at, last_error, result, dedup_key, lease_expires_at, worker_id, created_at, updated_at,
       periodic_key, misfire, overlap, tick_at, progress, progress_message,
       parents, waiting_for, on_parent_failure
FROM {schema}.jobs
UNION ALL
SELECT job_id, name, handler, data, queue, priority, NULL, NULL, 'completed', attempt, max_attempts, timeout,
       last_run_at, COALESCE(scheduled_at, created_at), last_error, result, dedup_key, NULL, worker_id, created_at,
       COALESCE(completed_at, created_at), NULL, 'skip', 'wait', NULL, NULL::real, NULL,
       NULL::bigint[], NULL::bigint[], NULL::text
FROM {schema}.job_runs
WHERE handler IS NOT NULL;
