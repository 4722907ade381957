-- A mixed fleet: a worker claims only the jobs whose handler it has, so the claim reads one
-- index range per (queue, handler) it serves, in claim order. This index replaces the one per queue.
DROP INDEX {schema}.jobs_claim_idx;
CREATE INDEX jobs_claim_idx ON {schema}.jobs (queue, handler, priority DESC, next_run_at, id)
    WHERE status = 'pending';

-- When an idle worker must wake: the earliest deferred job (or retry, or next tick). A job due at
-- the moment it was created (the usual enqueue) has no entry, so the hot inserts do not pay for it.
CREATE INDEX jobs_due_idx ON {schema}.jobs (next_run_at)
    WHERE status = 'pending' AND next_run_at > created_at;

-- What each live worker can run, so that jobs nobody can run are shown as such; and its lease,
-- which says when its heartbeat is too old for it to be alive.
ALTER TABLE {schema}.workers
    ADD COLUMN handlers text[] NOT NULL DEFAULT '{}',
    ADD COLUMN lease    double precision NOT NULL DEFAULT 30;
