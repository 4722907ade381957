-- Fleet-wide limits (docs/limits.md): how many jobs may run at once, and how many may start in any
-- window of a period, per queue (set_queue, kept here) and per handler (declared in code) or, for a
-- job of such a handler with a concurrency_key, per key of that handler.
--
-- The key of a job (NULL: none). A completed one-off job's history row keeps it, as it keeps dedup_key.
ALTER TABLE {schema}.jobs ADD COLUMN concurrency_key text;
ALTER TABLE {schema}.job_runs ADD COLUMN concurrency_key text;

-- A queue's limits; NULL is none. rate_limit jobs may start in any rate_period seconds.
ALTER TABLE {schema}.queues
    ADD COLUMN concurrency_limit integer,
    ADD COLUMN rate_limit        integer,
    ADD COLUMN rate_period       double precision;

-- The places taken under concurrency limits, a row per running job and limit it counts under: kind 'q'
-- (a queue's: name the queue, ckey '') or 'h' (a handler's: name the handler, ckey the job's
-- concurrency_key, '' for none), with the claim that took it (job_id, token: jobs.claims). Inserted by the
-- limited claim (queries.py, "claim_limited"); deleted by the statement that takes the job out of running,
-- the completion (a worker's, or the rescue of an expired lease), in the same transaction. A job that
-- leaves running another way (cancelled while its worker is gone, deleted by hand) leaves its row
-- behind, which maintenance deletes at its next round (the row's job no longer runs under that claim).
CREATE TABLE {schema}.limit_holders (
    job_id bigint NOT NULL,
    token  bigint NOT NULL,
    kind   text   NOT NULL,
    name   text   NOT NULL,
    ckey   text   NOT NULL,
    PRIMARY KEY (job_id, token, kind)
);

-- How many rows of limit_holders each group has, kept by every statement that inserts or deletes them,
-- in the same statement: so always exactly their count, and a claim reads one row per group instead of
-- counting (rows deleted from limit_holders leave index entries behind until vacuum, which a count would
-- read again at every claim). Since a row leaves limit_holders only once its job left running, a count is
-- never below the jobs that run, so a limit never lets one too many start; a row left behind counts one
-- too many until maintenance deletes it. Writers update these rows in the order of the key, so two that
-- update several never wait for each other in a circle.
CREATE TABLE {schema}.limit_counts (
    kind    text    NOT NULL,
    name    text    NOT NULL,
    ckey    text    NOT NULL,
    running integer NOT NULL,
    PRIMARY KEY (kind, name, ckey)
);

-- Starts under a rate limit, counted per limit and group (kind, name, ckey as above) in rows of a
-- twentieth of the period each (bucket: its number since the epoch), with the time of the row's last
-- start. A claim counts every start of a row whose last start is within the period: all of them may be
-- (more than the window holds, never fewer), so at most rate_limit start in any window of the period,
-- and at worst a twentieth of the period passes before the oldest row stops counting. One row per group
-- per claim is written, not one per job. A claim reads the rows from the bucket of the period's start on
-- (bucket before ckey in the key: what went before is never read again); maintenance deletes old rows.
CREATE TABLE {schema}.limit_starts (
    kind    text        NOT NULL,
    name    text        NOT NULL,
    bucket  bigint      NOT NULL,
    ckey    text        NOT NULL,
    last_at timestamptz NOT NULL,
    starts  integer     NOT NULL,
    PRIMARY KEY (kind, name, bucket, ckey)
);

-- What the claim of these (queue, handler) pairs (queues[i], handlers[i]) may take now, given the queues'
-- limits (in queues) and the handlers' (hnames, hconcs, hrates, hperiods: what the worker declares):
-- one row per pair whose queue is not paused, with
--   q_room     how many jobs of its queue may start now (most, when the queue has no limit);
--   h_limited  whether its handler has a limit, and then h_all (what a group of it with no running job
--              nor recent start may start), g_keys and g_rooms (what each group of it with some may start:
--              the concurrency keys, '' for the jobs without one) and full_keys (its groups that may start
--              none, whose jobs the claim passes over);
--   q_conc, q_period, h_conc, h_period  what to record of a start: a place under the queue's or the
--              handler's concurrency limit (limit_holders), a start under their rate limit (limit_starts);
--   at         the time the claim records as its start (and as the jobs' last_run_at).
--
-- The claim calls this first. It takes a transaction-level advisory lock per limit (in one order, so two
-- claims never wait for each other in a circle), held until the claim commits: the claims under one limit
-- follow each other. Its statements then read with a snapshot taken after the lock (a VOLATILE function
-- takes one per statement), so they see every claim under these limits committed before: a claim's own
-- statement, whose snapshot was taken when it started, would not see one that committed while it waited,
-- and two claims would both find "1 running < 2". What they read of completions is at worst older than
-- the truth, which only counts a finished job as still running. "at" is read after the lock too, so the
-- starts under one limit are recorded in the order of their claims. Generic plans: its statements are
-- the same at every call, and planning them again each time cost more than running them. ROWS 4 (a
-- worker's pairs under limits are few): the default guess of 1000 made the claim's plan look costly enough
-- for PostgreSQL to compile it with JIT at every call (50-180 ms).
CREATE FUNCTION {schema}.limit_plan(queues text[], handlers text[], hnames text[], hconcs integer[],
                                    hrates integer[], hperiods double precision[], most bigint)
RETURNS TABLE (at timestamptz, queue text, handler text, q_room bigint, q_conc boolean, q_period double precision,
               h_limited boolean, h_conc boolean, h_period double precision, h_all bigint, full_keys text[],
               g_keys text[], g_rooms bigint[])
LANGUAGE plpgsql VOLATILE ROWS 4 SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    now_at  timestamptz;
    kinds   text[];
    names   text[];
    concs   integer[];
    rates   integer[];
    periods double precision[];
    gk      text[];
    gn      text[];
    gc      text[];
    gr      bigint[];
    gs      bigint[];
BEGIN
    -- the limits of these pairs: 'q' a queue's, 'h' a handler's
    SELECT coalesce(array_agg(l.kind ORDER BY l.kind, l.name), '{}'), coalesce(array_agg(l.name ORDER BY l.kind, l.name), '{}'),
           coalesce(array_agg(l.conc ORDER BY l.kind, l.name), '{}'), coalesce(array_agg(l.rate ORDER BY l.kind, l.name), '{}'),
           coalesce(array_agg(l.period ORDER BY l.kind, l.name), '{}')
    INTO kinds, names, concs, rates, periods
    FROM (SELECT 'q' AS kind, s.name, s.concurrency_limit AS conc, s.rate_limit AS rate, s.rate_period AS period
          FROM {schema}.queues s
          WHERE s.name = ANY(queues) AND NOT s.paused AND (s.concurrency_limit IS NOT NULL OR s.rate_limit IS NOT NULL)
          UNION ALL
          SELECT DISTINCT 'h', h.n, h.c, h.r, h.p FROM unnest(hnames, hconcs, hrates, hperiods) AS h(n, c, r, p)
          WHERE h.n = ANY(handlers) AND (h.c IS NOT NULL OR h.r IS NOT NULL)) l;
    PERFORM pg_advisory_xact_lock(hashtext('aiojobs_pg:limit:{schema}'), hashtext(k || ':' || n))
    FROM unnest(kinds, names) AS u(k, n);  -- in the order of the arrays: by kind, then name
    now_at := clock_timestamp();
    -- what each group of these limits uses: jobs running, starts within the period
    SELECT array_agg(g.kind), array_agg(g.name), array_agg(g.ckey), array_agg(g.running), array_agg(g.started)
    INTO gk, gn, gc, gr, gs
    FROM (SELECT x.kind, x.name, x.ckey, sum(x.running)::bigint AS running, sum(x.started)::bigint AS started
          FROM (SELECT c.kind, c.name, c.ckey, c.running::bigint AS running, 0::bigint AS started
                FROM unnest(kinds, names) AS u(k, n)
                JOIN {schema}.limit_counts c ON c.kind = u.k AND c.name = u.n
                WHERE c.running > 0
                UNION ALL
                SELECT r.kind, r.name, r.ckey, 0, r.starts
                FROM unnest(kinds, names, periods) AS u(k, n, p)
                JOIN {schema}.limit_starts r ON r.kind = u.k AND r.name = u.n
                 AND r.bucket >= floor(extract(epoch FROM now_at - make_interval(secs => u.p)) * 20 / u.p)
                 AND r.last_at > now_at - make_interval(secs => u.p)
                WHERE u.p IS NOT NULL) x
          GROUP BY x.kind, x.name, x.ckey) g;
    RETURN QUERY
    WITH lim AS (
        SELECT * FROM unnest(kinds, names, concs, rates, periods) AS l(kind, name, conc, rate, period)
    ), room AS (
        SELECT g.kind, g.name, g.ckey, LEAST(l.conc - g.running, l.rate - g.started) AS n
        FROM unnest(gk, gn, gc, gr, gs) AS g(kind, name, ckey, running, started)
        JOIN lim l ON l.kind = g.kind AND l.name = g.name
    )
    SELECT now_at, p.queue, p.handler,
           CASE WHEN ql.kind IS NULL THEN most
                ELSE GREATEST(0, coalesce(qr.n, LEAST(ql.conc, ql.rate)))::bigint END,
           ql.conc IS NOT NULL, ql.period, hl.kind IS NOT NULL, hl.conc IS NOT NULL, hl.period,
           LEAST(hl.conc, hl.rate)::bigint, coalesce(g.full_keys, '{}'), coalesce(g.keys, '{}'), coalesce(g.rooms, '{}')
    FROM unnest(queues, handlers) AS p(queue, handler)
    LEFT JOIN lim ql ON ql.kind = 'q' AND ql.name = p.queue
    LEFT JOIN room qr ON qr.kind = 'q' AND qr.name = p.queue AND qr.ckey = ''
    LEFT JOIN lim hl ON hl.kind = 'h' AND hl.name = p.handler
    LEFT JOIN LATERAL (
        SELECT array_agg(r.ckey) AS keys, array_agg(r.n) AS rooms,
               array_agg(r.ckey) FILTER (WHERE r.n <= 0) AS full_keys
        FROM room r WHERE r.kind = 'h' AND r.name = p.handler) g ON hl.kind IS NOT NULL
    WHERE NOT EXISTS (SELECT 1 FROM {schema}.queues s WHERE s.name = p.queue AND s.paused);
END $$;

CREATE OR REPLACE VIEW {schema}.all_jobs AS
SELECT id, name, handler, data, queue, priority, schedule, timezone, status, attempts, max_attempts, timeout,
       last_run_at, next_run_at, last_error, result, dedup_key, lease_expires_at, worker_id, created_at, updated_at,
       periodic_key, misfire, overlap, tick_at, progress, progress_message,
       parents, waiting_for, on_parent_failure, concurrency_key
FROM {schema}.jobs
UNION ALL
SELECT job_id, name, handler, data, queue, priority, NULL, NULL, 'completed', attempt, max_attempts, timeout,
       last_run_at, COALESCE(scheduled_at, created_at), last_error, result, dedup_key, NULL, worker_id, created_at,
       COALESCE(completed_at, created_at), NULL, 'skip', 'wait', NULL, NULL::real, NULL,
       NULL::bigint[], NULL::bigint[], NULL::text, concurrency_key
FROM {schema}.job_runs
WHERE handler IS NOT NULL;
