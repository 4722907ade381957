-- An enqueue with parents locks them in id order, whatever plan reads them: the order in which a
-- worker's completion locks the jobs of its flush (Queries.complete sends them sorted by id, and reads them
-- by primary key). Before, the flagging UPDATE locked them in the order of its scan (the heap's, under a
-- sequential or bitmap scan), so an enqueue after [a, b] holding b and waiting for a could meet a
-- completion holding a and waiting for b: a deadlock, which PostgreSQL broke by failing one of them
-- (seen as DeadlockDetectedError from app.enqueue). Only the lock order changes: the function is 0012's.
CREATE OR REPLACE FUNCTION {schema}.wait_for_parents() RETURNS trigger LANGUAGE plpgsql VOLATILE AS $$
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
    PERFORM FROM {schema}.jobs p WHERE p.id = ANY(NEW.parents) ORDER BY p.id FOR NO KEY UPDATE;
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
