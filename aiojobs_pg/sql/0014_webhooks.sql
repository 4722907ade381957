-- Webhooks (docs/webhooks.md): URLs told of job events, for every worker of the schema. Each delivery is
-- a job of the built-in handler 'aiojobs_pg.webhook' on the queue 'aiojobs_pg.webhooks', inserted in the
-- transaction that writes the outcome it reports, so a crash can neither lose nor invent one.
CREATE TABLE {schema}.webhooks (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url          text NOT NULL,
    -- some of completed, failed, cancelled, retrying
    events       text[] NOT NULL,
    -- only jobs of these handlers / queues; NULL: all
    handlers     text[],
    queues       text[],
    -- the HMAC-SHA256 key of the signature; read by the delivering worker, never put in a delivery's data
    secret       text NOT NULL,
    -- attempts of each delivery before it fails for good
    max_attempts integer NOT NULL,
    description  text,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- The deliveries of events: one job per (event, matching webhook), in the caller's transaction. The events
-- come as arrays (one element per job; a NULL event is none). A delivery reports on no other delivery.
-- Returns how many deliveries it created; their workers are woken once.
CREATE FUNCTION {schema}.webhook_deliveries(events text[], ids bigint[], handlers text[], queues text[],
                                            statuses text[], attempts integer[], max_attempts integer[],
                                            errors text[], results jsonb[])
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    created bigint;
BEGIN
    INSERT INTO {schema}.jobs (handler, data, queue, priority, max_attempts)
    SELECT 'aiojobs_pg.webhook',
           jsonb_build_object(
               'webhook', w.id, 'url', w.url, 'event', e.event, 'occurred_at', now(),
               'job', jsonb_build_object('id', e.id, 'handler', e.handler, 'queue', e.queue, 'status', e.status,
                                         'attempt', e.attempt, 'max_attempts', e.max_attempts, 'error', e.error,
                                         'result', e.result)),
           'aiojobs_pg.webhooks', 0, w.max_attempts
    FROM unnest(events, ids, handlers, queues, statuses, attempts, max_attempts, errors, results)
         AS e(event, id, handler, queue, status, attempt, max_attempts, error, result)
    JOIN {schema}.webhooks w ON e.event = ANY(w.events)
                            AND (w.handlers IS NULL OR e.handler = ANY(w.handlers))
                            AND (w.queues IS NULL OR e.queue = ANY(w.queues))
    WHERE e.event IS NOT NULL AND e.handler <> 'aiojobs_pg.webhook'
    ORDER BY e.id, w.id;
    GET DIAGNOSTICS created = ROW_COUNT;
    IF created > 0 THEN
        PERFORM pg_notify('{schema}_jobs', 'aiojobs_pg.webhooks');
    END IF;
    RETURN created;
END $$;

-- A job's status became failed or cancelled, by whatever statement: a worker's completion, a rescue that
-- fails it for good, a cancel (pending or running), a bulk cancel, a parent that failed (migration 0012).
-- The completion statements report the other events themselves (completed, retrying, and a recurring
-- job's failed tick, after which it stays pending). A run stopped by a cancel leaves the status as the
-- cancel set it, so it reports nothing twice. Only rows whose status changes to one of these two call the
-- function; the others pay for the condition.
CREATE FUNCTION {schema}.webhook_job_ended() RETURNS trigger LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF EXISTS (SELECT FROM {schema}.webhooks) THEN
        PERFORM {schema}.webhook_deliveries(
            ARRAY[NEW.status], ARRAY[NEW.id], ARRAY[NEW.handler], ARRAY[NEW.queue], ARRAY[NEW.status],
            ARRAY[NEW.attempts], ARRAY[NEW.max_attempts],
            -- the error of this end: a failure's, or the reason a handler cancelled with; not an older one
            ARRAY[CASE WHEN NEW.status = 'failed' OR NEW.last_error IS DISTINCT FROM OLD.last_error
                       THEN NEW.last_error END],
            ARRAY[NULL::jsonb]);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_webhooks_ended AFTER UPDATE OF status ON {schema}.jobs
    FOR EACH ROW WHEN (NEW.status IN ('failed', 'cancelled') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION {schema}.webhook_job_ended();
