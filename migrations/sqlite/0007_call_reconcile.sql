-- Reconciliation of calls whose events were lost; mirrors
-- migrations/postgres/0007_call_reconcile.sql (reconcile_until: the lease of the worker
-- that asks the provider, ISO-8601 UTC text like every timestamp here).

ALTER TABLE calls ADD COLUMN reconcile_until TEXT;
CREATE INDEX calls_live_updated_idx ON calls (updated_at) WHERE status_rank < 3;
-- A provider's call is the hub's call at most once: a call whose place answer was lost
-- adopts the provider call found for it only if no other call has it.
CREATE UNIQUE INDEX calls_provider_call_unique ON calls (provider, provider_call_id)
    WHERE provider_call_id <> '';
