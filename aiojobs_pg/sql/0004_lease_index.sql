-- The lease index covers the rows that hold a lease (exactly the running ones) but no longer
-- says so in terms of status: a predicate of status = 'running' let the planner answer
-- completion's "status = 'running'" by reading every running job (cheap-looking with stale
-- statistics), when completion needs one primary-key lookup per finished job.
DROP INDEX {schema}.jobs_lease_idx;
CREATE INDEX jobs_lease_idx ON {schema}.jobs (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
