-- Enqueue from any client, in its own transaction (issue 22): SELECT {schema}.enqueue('send_email', '{"to": 1}').
--
-- The same checks as App.enqueue (aiojobs_pg/enqueue.py, validation.py) and the same notifications as its
-- insert (queries._insert_one): the workers of the queue are woken when the job is due now, told when it
-- is due otherwise ('due <seconds> <queue>' on the control channel); both are delivered when the caller
-- commits, and not at all if it rolls back. Returns the new job's id, or that of the job holding the
-- dedup_key (a pending or running one; with dedup_window, also one created within the window), as
-- App.enqueue returns it. A job with parents (after) goes through migration 0012's trigger like any insert.
--
-- A refused argument raises SQLSTATE AJ002 with the message '<field>: <what is wrong>' and the field in
-- the error's COLUMN (asyncpg: exc.column_name; psycopg: exc.diag.column_name). What it cannot check as
-- Python does (docs/drivers.md):
-- - the App's settings: max_attempts defaults to 3 (App(default_max_attempts=)), data is bounded by the
--   argument max_data_bytes (1 MiB by default, as App(max_data_bytes=); NULL: no limit), measured on
--   PostgreSQL's text form of the jsonb (which has a space after each ':' and ',', so it is a little larger
--   than Python's compact encoding), and a handler is not checked against any App's registry;
-- - NUL characters and invalid JSON never reach it: PostgreSQL's text and jsonb refuse them as the call's
--   arguments are read (SQLSTATE 22P05/22P02, 22021), before the function runs;
-- - recurring jobs (schedule=) are not taken: cron parsing lives in Python (App.enqueue, @app.periodic).
--
-- PL/pgSQL: the checks and the retries of a taken dedup key need statements in sequence. Its parameters
-- share names with the columns of jobs: in SQL statements they are written enqueue.<name>.

-- Raised for a refused argument; called only on the error path, so a valid call pays nothing for it.
CREATE FUNCTION {schema}.enqueue_refuse(field text, message text) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'AJ002', MESSAGE = field || ': ' || message, COLUMN = field;
END $$;

CREATE FUNCTION {schema}.enqueue(
    handler           text,
    data              jsonb       DEFAULT 'null',
    queue             text        DEFAULT 'default',
    priority          integer     DEFAULT 0,
    max_attempts      integer     DEFAULT 3,
    run_at            timestamptz DEFAULT NULL,
    delay             interval    DEFAULT NULL,
    dedup_key         text        DEFAULT NULL,
    name              text        DEFAULT NULL,
    timeout           interval    DEFAULT NULL,
    after             bigint[]    DEFAULT NULL,
    on_parent_failure text        DEFAULT NULL,
    concurrency_key   text        DEFAULT NULL,
    dedup_window      interval    DEFAULT NULL,
    backoff           jsonb       DEFAULT NULL,
    max_data_bytes    integer     DEFAULT 1048576
) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    -- validation.py's limits
    max_delay   constant interval := interval '36600 days';
    max_backoff constant float8 := 3162240000;  -- 36600 days in seconds
    payload     jsonb := COALESCE(data, 'null');
    parent_ids  bigint[];
    stored_backoff jsonb;
    bad         text;
    due         timestamptz;
    new_id      bigint;
    new_status  text;
    new_due     timestamptz;
    holder      bigint;
BEGIN
    -- Text: present where required, not blank, bounded (validation.check_text).
    IF handler IS NULL OR handler !~ '\S' THEN
        PERFORM {schema}.enqueue_refuse('handler', 'must not be empty');
    ELSIF char_length(handler) > 500 THEN
        PERFORM {schema}.enqueue_refuse('handler', format('is %s characters long; the limit is 500', char_length(handler)));
    END IF;
    IF queue IS NULL OR queue !~ '\S' THEN
        PERFORM {schema}.enqueue_refuse('queue', 'must not be empty');
    ELSIF char_length(queue) > 100 THEN
        PERFORM {schema}.enqueue_refuse('queue', format('is %s characters long; the limit is 100', char_length(queue)));
    END IF;
    IF char_length(name) > 500 THEN
        PERFORM {schema}.enqueue_refuse('name', format('is %s characters long; the limit is 500', char_length(name)));
    END IF;
    IF char_length(dedup_key) > 500 THEN
        PERFORM {schema}.enqueue_refuse('dedup_key', format('is %s characters long; the limit is 500',
                                                             char_length(dedup_key)));
    END IF;
    -- never empty: the limits count the jobs without one under ''
    IF concurrency_key IS NOT NULL AND concurrency_key !~ '\S' THEN
        PERFORM {schema}.enqueue_refuse('concurrency_key', 'must not be empty');
    ELSIF char_length(concurrency_key) > 500 THEN
        PERFORM {schema}.enqueue_refuse('concurrency_key', format('is %s characters long; the limit is 500',
                                                                   char_length(concurrency_key)));
    END IF;

    -- Numbers (integer already bounds priority to PostgreSQL's integer).
    IF priority IS NULL THEN
        PERFORM {schema}.enqueue_refuse('priority', 'must not be null');
    END IF;
    IF max_attempts IS NULL OR max_attempts NOT BETWEEN 1 AND 10000 THEN
        PERFORM {schema}.enqueue_refuse('max_attempts', format('must be between 1 and 10000, got %s',
                                                                COALESCE(max_attempts::text, 'null')));
    END IF;

    -- Durations and the due time.
    IF timeout IS NOT NULL AND timeout <= interval '0' THEN
        PERFORM {schema}.enqueue_refuse('timeout', format('invalid duration %s: must be more than zero', timeout));
    END IF;
    IF delay IS NOT NULL AND run_at IS NOT NULL THEN
        PERFORM {schema}.enqueue_refuse('delay', 'give either delay or run_at, not both');
    END IF;
    IF delay < interval '0' THEN
        PERFORM {schema}.enqueue_refuse('delay', format('invalid duration %s: must not be negative', delay));
    ELSIF delay > max_delay THEN
        PERFORM {schema}.enqueue_refuse('delay', 'must be at most 36600 days');
    END IF;
    -- A due time Python can read back (a datetime: years 1 to 9999), so no worker fails to decode its claim.
    IF NOT isfinite(run_at) OR run_at < timestamptz '0001-01-02 00:00+00' OR run_at >= timestamptz '9999-12-31 00:00+00' THEN
        PERFORM {schema}.enqueue_refuse('run_at', format('%s is out of range (years 1 to 9999)', run_at));
    END IF;

    -- Data: nested at most 256 levels (deeper, a worker's JSON decoder could fail on its claim), then its size.
    IF jsonb_path_exists(payload, 'strict $.**{256} ? (@.type() == "array" || @.type() == "object")') THEN
        PERFORM {schema}.enqueue_refuse('data', 'is nested deeper than 256 levels');
    END IF;
    IF max_data_bytes IS NOT NULL AND octet_length(payload::text) > max_data_bytes THEN
        PERFORM {schema}.enqueue_refuse('data', format('is %s bytes as JSON; the limit is %s bytes (max_data_bytes)',
                                                        octet_length(payload::text), max_data_bytes));
    END IF;

    -- Parents (validation.check_parents): ids, deduplicated in order, then each one found (the trigger of
    -- migration 0012 checks again under its row locks; this names the field in the common case).
    IF on_parent_failure IS NOT NULL AND on_parent_failure NOT IN ('cancel', 'run') THEN
        PERFORM {schema}.enqueue_refuse('on_parent_failure', format('must be one of cancel, run (or null), got %L',
                                                                     on_parent_failure));
    END IF;
    IF after IS NULL THEN
        IF on_parent_failure IS NOT NULL THEN
            PERFORM {schema}.enqueue_refuse('on_parent_failure', 'only applies to a job with after');
        END IF;
    ELSE
        IF array_ndims(after) > 1 OR array_position(after, NULL) IS NOT NULL THEN
            PERFORM {schema}.enqueue_refuse('after', 'must be a list of job ids');
        END IF;
        SELECT array_agg(p ORDER BY pos) INTO parent_ids
        FROM (SELECT p, min(o) AS pos FROM unnest(after) WITH ORDINALITY AS u(p, o) GROUP BY p) d;
        IF parent_ids IS NULL THEN
            PERFORM {schema}.enqueue_refuse('after', 'must name at least one job');
        ELSIF cardinality(parent_ids) > 1000 THEN
            PERFORM {schema}.enqueue_refuse('after', format('names %s jobs; the limit is 1000', cardinality(parent_ids)));
        END IF;
        SELECT min(p) INTO holder FROM unnest(parent_ids) AS p WHERE p < 1;
        IF holder IS NOT NULL THEN
            PERFORM {schema}.enqueue_refuse('after', format('must be between 1 and 9223372036854775807, got %s', holder));
        END IF;
        SELECT min(p) INTO holder FROM unnest(parent_ids) AS p
        WHERE NOT EXISTS (SELECT FROM {schema}.jobs j WHERE j.id = p)
          AND NOT EXISTS (SELECT FROM {schema}.job_runs r WHERE r.job_id = p AND r.handler IS NOT NULL);
        IF holder IS NOT NULL THEN
            PERFORM {schema}.enqueue_refuse('after', format('job %s not found', holder));
        END IF;
        holder := NULL;
    END IF;

    -- Uniqueness.
    IF dedup_window IS NOT NULL THEN
        IF dedup_key IS NULL THEN
            PERFORM {schema}.enqueue_refuse('dedup_window', 'needs a dedup_key: the window is the key''s');
        ELSIF dedup_window <= interval '0' THEN
            PERFORM {schema}.enqueue_refuse('dedup_window', format('invalid duration %s: must be more than zero',
                                                                    dedup_window));
        ELSIF dedup_window > max_delay THEN
            PERFORM {schema}.enqueue_refuse('dedup_window', 'must be at most 36600 days');
        END IF;
    END IF;

    -- Backoff (models.Backoff): seconds for a fixed one, or an object of some of base, factor, cap, jitter;
    -- stored with all four, as Python stores it.
    IF backoff IS NOT NULL THEN
        IF jsonb_typeof(backoff) = 'number' THEN
            stored_backoff := jsonb_build_object('base', backoff, 'factor', 1.0, 'cap', backoff, 'jitter', 0.0);
        ELSIF jsonb_typeof(backoff) = 'object' THEN
            SELECT min(k) INTO bad FROM jsonb_object_keys(backoff) AS k
            WHERE k NOT IN ('base', 'factor', 'cap', 'jitter');
            IF bad IS NOT NULL THEN
                PERFORM {schema}.enqueue_refuse('backoff', format('unknown key %L; expected some of base, factor, cap, jitter', bad));
            END IF;
            SELECT min(k) INTO bad FROM jsonb_each(backoff) AS e(k, v) WHERE jsonb_typeof(v) <> 'number';
            IF bad IS NOT NULL THEN
                PERFORM {schema}.enqueue_refuse('backoff', format('%s must be a finite number, got %s', bad, backoff -> bad));
            END IF;
            stored_backoff := jsonb_build_object('base', 1.0, 'factor', 2.0, 'cap', 3600.0, 'jitter', 0.2) || backoff;
        ELSE
            PERFORM {schema}.enqueue_refuse('backoff', 'must be a number of seconds (a fixed backoff) or an object of '
                                                       'some of base, factor, cap and jitter');
        END IF;
        IF NOT ((stored_backoff ->> 'base')::float8 >= 0 AND (stored_backoff ->> 'factor')::float8 >= 1
                AND (stored_backoff ->> 'cap')::float8 >= 0 AND (stored_backoff ->> 'jitter')::float8 BETWEEN 0 AND 1) THEN
            PERFORM {schema}.enqueue_refuse('backoff', 'need base >= 0, factor >= 1, cap >= 0 and 0 <= jitter <= 1');
        ELSIF (stored_backoff ->> 'base')::float8 > max_backoff OR (stored_backoff ->> 'cap')::float8 > max_backoff THEN
            PERFORM {schema}.enqueue_refuse('backoff', format('base and cap must be at most %s seconds (36600 days)',
                                                               max_backoff::bigint));
        ELSIF (stored_backoff ->> 'factor')::float8 > 1000000 THEN
            PERFORM {schema}.enqueue_refuse('backoff', 'factor must be at most 1000000');
        END IF;
    END IF;

    due := COALESCE(run_at, now() + COALESCE(delay, interval '0'));
    -- A taken key is looked up after the insert finds it taken; its holder may end in between: try again
    -- (enqueue.insert_one). Without a key the loop runs once.
    FOR attempt IN 1 .. 10 LOOP
        IF dedup_window IS NOT NULL THEN
            -- the key is locked, then its holder looked up: live, or created within the window (migration 0015)
            holder := ({schema}.dedup_holders(ARRAY[dedup_key], ARRAY[extract(epoch FROM dedup_window)::float8]))[1];
            IF holder IS NOT NULL THEN
                RETURN holder;
            END IF;
        END IF;
        INSERT INTO {schema}.jobs AS j (name, handler, data, queue, priority, max_attempts, timeout, next_run_at,
                                        dedup_key, parents, on_parent_failure, concurrency_key, backoff)
        VALUES (enqueue.name, enqueue.handler, payload, enqueue.queue, enqueue.priority, enqueue.max_attempts,
                extract(epoch FROM enqueue.timeout), due, enqueue.dedup_key, parent_ids, enqueue.on_parent_failure,
                enqueue.concurrency_key, stored_backoff)
        ON CONFLICT (dedup_key, (CASE WHEN status IN ('pending', 'running') THEN 0 ELSE id END))
            WHERE dedup_key IS NOT NULL DO NOTHING
        RETURNING j.id, j.status, j.next_run_at INTO new_id, new_status, new_due;
        EXIT WHEN new_id IS NOT NULL;
        SELECT j.id INTO holder FROM {schema}.jobs j
        WHERE j.dedup_key = enqueue.dedup_key AND j.status IN ('pending', 'running');
        IF holder IS NOT NULL THEN
            RETURN holder;
        END IF;
    END LOOP;
    IF new_id IS NULL THEN
        PERFORM {schema}.enqueue_refuse('dedup_key', format('%L is contended; try again', dedup_key));
    END IF;

    -- Whom to tell, as the Python insert does: a job waiting for its parents (or ended with one) tells nobody.
    IF new_status = 'pending' THEN
        IF new_due <= now() THEN
            PERFORM pg_notify('{schema}_jobs', queue);
        ELSE
            PERFORM pg_notify('{schema}_control', 'due ' || extract(epoch FROM new_due - now())::text || ' ' || queue);
        END IF;
    END IF;
    RETURN new_id;
END $$;
