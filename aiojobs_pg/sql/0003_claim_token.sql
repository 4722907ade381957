-- The fencing token: a counter that every claim increments and nothing ever resets.
-- The attempt number alone is not enough: retry() resets it to 0 and a recurring job's next
-- tick resets it too, so an old worker's "attempt 1" could match a new claim's "attempt 1".
ALTER TABLE {schema}.jobs ADD COLUMN claims bigint NOT NULL DEFAULT 0;
