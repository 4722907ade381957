-- Someone waits for this job to finish (App.wait): its completion, failure or cancellation notifies
-- the control channel ('done <id>'). NULL (no one) costs no space, and the completion reads the flag
-- from the row it already holds, so a job nobody waits for costs nothing more.
ALTER TABLE {schema}.jobs ADD COLUMN awaited boolean;
