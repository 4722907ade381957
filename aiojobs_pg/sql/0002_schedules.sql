-- Recurring jobs: declared schedules (one row per declaration) and per-schedule policies.

ALTER TABLE {schema}.jobs
    ADD COLUMN periodic_key text,
    ADD COLUMN misfire text NOT NULL DEFAULT 'skip' CHECK (misfire IN ('skip', 'all')),
    ADD COLUMN overlap text NOT NULL DEFAULT 'wait' CHECK (overlap IN ('wait', 'skip'));

-- Many workers declaring the same schedule at once create exactly one row.
CREATE UNIQUE INDEX jobs_periodic_idx ON {schema}.jobs (periodic_key) WHERE periodic_key IS NOT NULL;

-- The tick a retried or released run still belongs to (NULL: next_run_at is the tick).
ALTER TABLE {schema}.jobs ADD COLUMN tick_at timestamptz;

-- Each run records the tick (or due time) it ran for: "every tick ran once" is checkable.
ALTER TABLE {schema}.job_runs ADD COLUMN scheduled_at timestamptz;
