-- Retention that keeps pace with the drain, and an overview that does not count the history.
--
-- queue_counts: how many completed one-off jobs each queue keeps in the history (rows of job_runs with
-- handler set, migration 0006), kept in the transaction of every statement that changes them: the
-- completion statement adds (its CTE done_counted, in queries.py), and the triggers below subtract for
-- pruning, deletion and a trigger of a completed job (its row becomes a plain run row). So GET /queues
-- reads a few counter rows instead of counting the history, and the pruner knows how far each queue is
-- over its count limit without counting either. Each backend adds to a row of its own (backend =
-- pg_backend_pid()), so workers completing at once never wait for each other's counter row;
-- maintenance folds the rows of backends that are gone into the row of backend 0. A queue's total is
-- the sum of its rows. Completion counts in its own statement rather than through an insert trigger,
-- which cost the hot path more (docs/performance.md, "Retention and the overview"); a completed job's
-- row inserted by SQL of your own is therefore not counted (see recount_completed below).
CREATE TABLE {schema}.queue_counts (
    queue     text    NOT NULL,
    backend   integer NOT NULL,
    completed bigint  NOT NULL,
    PRIMARY KEY (queue, backend)
);

-- Where pruning left off: 'age' (every history row below after_id is gone), and 'keep:<queue>' (no
-- completed job of that queue is kept below after_id). A round starts there instead of reading again
-- the index entries of the rows it deleted, which stay until (auto)vacuum removes them.
CREATE TABLE {schema}.prune_cursors (
    name     text   PRIMARY KEY,
    after_id bigint NOT NULL
);

-- The counters from scratch: counts the whole history once, with every write to it held off meanwhile.
-- The migration seeds them so. A worker of an earlier release completes jobs without counting them (and
-- pruning them later subtracts them): after a rolling upgrade, once those workers have stopped, call
-- SELECT <schema>.recount_completed(); to make the counters exact again.
CREATE FUNCTION {schema}.recount_completed() RETURNS void LANGUAGE sql AS $$
    LOCK TABLE {schema}.job_runs IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM {schema}.queue_counts;
    INSERT INTO {schema}.queue_counts (queue, backend, completed)
    SELECT queue, 0, count(*) FROM {schema}.job_runs WHERE handler IS NOT NULL GROUP BY queue;
$$;

-- Statement triggers with transition tables: one call per statement (a pruning batch), not per row.
CREATE FUNCTION {schema}.queue_counts_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.queue_counts AS c (queue, backend, completed)
    SELECT queue, pg_backend_pid(), -count(*) FROM removed WHERE handler IS NOT NULL GROUP BY queue
    ON CONFLICT (queue, backend) DO UPDATE SET completed = c.completed + EXCLUDED.completed;
    RETURN NULL;
END $$;

CREATE FUNCTION {schema}.queue_counts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.queue_counts AS c (queue, backend, completed)
    SELECT queue, pg_backend_pid(), sum(n) FROM (
        SELECT queue, 1 AS n FROM added WHERE handler IS NOT NULL
        UNION ALL
        SELECT queue, -1 FROM removed WHERE handler IS NOT NULL) d
    GROUP BY queue HAVING sum(n) <> 0
    ON CONFLICT (queue, backend) DO UPDATE SET completed = c.completed + EXCLUDED.completed;
    RETURN NULL;
END $$;

CREATE FUNCTION {schema}.queue_counts_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM {schema}.queue_counts;
    DELETE FROM {schema}.prune_cursors;  -- ids may start again (RESTART IDENTITY)
    RETURN NULL;
END $$;

CREATE TRIGGER queue_counts_delete AFTER DELETE ON {schema}.job_runs
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION {schema}.queue_counts_removed();
CREATE TRIGGER queue_counts_update AFTER UPDATE ON {schema}.job_runs
    REFERENCING OLD TABLE AS removed NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.queue_counts_changed();
CREATE TRIGGER queue_counts_truncate AFTER TRUNCATE ON {schema}.job_runs
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.queue_counts_truncated();

SELECT {schema}.recount_completed();
