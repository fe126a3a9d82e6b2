-- Telephony: calls, their events, campaigns and campaign rows.
--
-- A call's token (in the URLs the provider is given) is kept only as its SHA-256.
-- Events are unique per (call, provider event id): a replayed or duplicated callback
-- inserts nothing. call_events.sequence orders a tenant's events for WatchCalls; events
-- of one tenant are inserted under a transaction-scoped advisory lock, so sequence
-- order is commit order and a watcher reading "after N" never skips one.

CREATE TABLE calls (
    id               text COLLATE "C" PRIMARY KEY,
    tenant_id        text NOT NULL,
    credential_id    text NOT NULL,
    credential_name  text NOT NULL DEFAULT '',
    provider         text NOT NULL,
    provider_call_id text NOT NULL DEFAULT '',
    to_number        text NOT NULL,
    from_number      text NOT NULL,
    status           text NOT NULL,
    status_rank      smallint NOT NULL DEFAULT 0,
    provider_status  text NOT NULL DEFAULT '',
    action           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(action) = 'object'),
    metadata         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    token_hash       text NOT NULL,
    idempotency_key  text,
    campaign_id      text COLLATE "C",
    campaign_row     bigint,
    attempt          integer NOT NULL DEFAULT 1,
    duration_ms      bigint,
    answered_by      text NOT NULL DEFAULT '',
    error            text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CONSTRAINT calls_tenant_idempotency_key UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX calls_tenant_created_idx ON calls (tenant_id, created_at DESC, id DESC);
CREATE INDEX calls_campaign_idx ON calls (campaign_id, campaign_row) WHERE campaign_id IS NOT NULL;
CREATE INDEX calls_provider_call_idx ON calls (provider, provider_call_id);

CREATE TABLE call_events (
    sequence         bigserial PRIMARY KEY,
    call_id          text COLLATE "C" NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    tenant_id        text NOT NULL,
    campaign_id      text COLLATE "C",
    event_id         text NOT NULL,
    status           text NOT NULL DEFAULT '',
    provider_status  text NOT NULL DEFAULT '',
    occurred_at      timestamptz,
    received_at      timestamptz NOT NULL,
    duration_ms      bigint,
    answered_by      text NOT NULL DEFAULT '',
    error            text NOT NULL DEFAULT '',
    applied          boolean NOT NULL,
    raw              jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(raw) = 'object'),
    CONSTRAINT call_events_call_event_key UNIQUE (call_id, event_id)
);
CREATE INDEX call_events_tenant_sequence_idx ON call_events (tenant_id, sequence);
