-- Initial schema. {schema} is replaced by the validated schema name.

CREATE TABLE {schema}.jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text,
    handler          text        NOT NULL,
    data             jsonb       NOT NULL DEFAULT '{}',
    queue            text        NOT NULL DEFAULT 'default',
    priority         integer     NOT NULL DEFAULT 0,
    schedule         text,
    timezone         text,
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     integer     NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    timeout          double precision CHECK (timeout > 0),
    last_run_at      timestamptz,
    next_run_at      timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    result           jsonb,
    dedup_key        text,
    lease_expires_at timestamptz,
    worker_id        text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The claim reads this index only: pending rows, per queue, in claim order.
CREATE INDEX jobs_claim_idx ON {schema}.jobs (queue, priority DESC, next_run_at, id)
    WHERE status = 'pending';
-- Lease rescue and renewal look at running rows only.
CREATE INDEX jobs_lease_idx ON {schema}.jobs (lease_expires_at)
    WHERE status = 'running';
-- At most one live job per dedup key; enqueue relies on it with ON CONFLICT.
CREATE UNIQUE INDEX jobs_dedup_idx ON {schema}.jobs (dedup_key)
    WHERE dedup_key IS NOT NULL AND status IN ('pending', 'running');

-- Append-only execution history: one row per attempt. No foreign key, so that
-- writing history costs no lookup on the hot table; deleting a job deletes its runs.
CREATE TABLE {schema}.job_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id       bigint      NOT NULL,
    attempt      integer     NOT NULL,
    worker_id    text,
    status       text        NOT NULL
                 CHECK (status IN ('completed', 'failed', 'cancelled', 'released')),
    started_at   timestamptz,
    completed_at timestamptz,
    duration_ms  double precision,
    error        text,
    result       jsonb
);
CREATE INDEX job_runs_job_idx ON {schema}.job_runs (job_id, id);

-- Live workers and their heartbeats (for operators; correctness never depends on it).
CREATE TABLE {schema}.workers (
    id           text PRIMARY KEY,
    hostname     text        NOT NULL,
    pid          integer     NOT NULL,
    queues       text[],
    concurrency  integer     NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
