-- Reconciliation of calls whose events were lost (integration_hub/telephony/reconcile.py).
--
-- reconcile_until is a lease: a worker that asks the provider for a silent call's state
-- first sets it (now + the recheck interval) in the transaction that picks the call, so
-- that every worker of every replica polls a given call at most once an interval.

ALTER TABLE calls ADD COLUMN reconcile_until timestamptz;
-- The calls not ended yet, oldest news first: what a reconciliation pass looks through.
CREATE INDEX calls_live_updated_idx ON calls (updated_at) WHERE status_rank < 3;
-- A provider's call is the hub's call at most once: a call whose place answer was lost
-- adopts the provider call found for it only if no other call has it.
CREATE UNIQUE INDEX calls_provider_call_unique ON calls (provider, provider_call_id)
    WHERE provider_call_id <> '';
