-- Settings of a queue that every worker on every host obeys, kept here so they survive restarts:
-- a paused queue's pending jobs are not claimed (its running ones finish). A queue without a row
-- has the defaults; the claim reads this table by primary key, once per queue it serves.
CREATE TABLE {schema}.queues (
    name       text PRIMARY KEY,
    paused     boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
