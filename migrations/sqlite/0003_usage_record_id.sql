-- A usage row names the call it counts (UsageRow.record_id): the recorder writes a batch
-- again when an outage cut the answer to its commit, and the unique index makes that
-- second write skip the rows already stored. Rows from before this migration have NULL,
-- which a unique index never compares equal.
ALTER TABLE usage_records ADD COLUMN record_id text;
CREATE UNIQUE INDEX usage_records_record_id_idx ON usage_records (record_id);
