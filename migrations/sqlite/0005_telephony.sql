-- Telephony: calls and their events; mirrors migrations/postgres/0005_telephony.sql.
-- Timestamps are fixed-width ISO-8601 UTC text, so text order is time order. SQLite
-- runs one writer at a time, so sequence order is commit order without a lock.

CREATE TABLE calls (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    credential_id    TEXT NOT NULL,
    credential_name  TEXT NOT NULL DEFAULT '',
    provider         TEXT NOT NULL,
    provider_call_id TEXT NOT NULL DEFAULT '',
    to_number        TEXT NOT NULL,
    from_number      TEXT NOT NULL,
    status           TEXT NOT NULL,
    status_rank      INTEGER NOT NULL DEFAULT 0,
    provider_status  TEXT NOT NULL DEFAULT '',
    action           TEXT NOT NULL DEFAULT '{}' CHECK (json_type(action) = 'object'),
    metadata         TEXT NOT NULL DEFAULT '{}' CHECK (json_type(metadata) = 'object'),
    token_hash       TEXT NOT NULL,
    idempotency_key  TEXT,
    campaign_id      TEXT,
    campaign_row     INTEGER,
    attempt          INTEGER NOT NULL DEFAULT 1,
    duration_ms      INTEGER,
    answered_by      TEXT NOT NULL DEFAULT '',
    error            TEXT NOT NULL DEFAULT '',
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    CONSTRAINT calls_tenant_idempotency_key UNIQUE (tenant_id, idempotency_key)
) STRICT;
CREATE INDEX calls_tenant_created_idx ON calls (tenant_id, created_at DESC, id DESC);
CREATE INDEX calls_campaign_idx ON calls (campaign_id, campaign_row) WHERE campaign_id IS NOT NULL;
CREATE INDEX calls_provider_call_idx ON calls (provider, provider_call_id);

CREATE TABLE call_events (
    sequence         INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id          TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    tenant_id        TEXT NOT NULL,
    campaign_id      TEXT,
    event_id         TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT '',
    provider_status  TEXT NOT NULL DEFAULT '',
    occurred_at      TEXT,
    received_at      TEXT NOT NULL,
    duration_ms      INTEGER,
    answered_by      TEXT NOT NULL DEFAULT '',
    error            TEXT NOT NULL DEFAULT '',
    applied          INTEGER NOT NULL CHECK (applied IN (0, 1)),
    raw              TEXT NOT NULL DEFAULT '{}' CHECK (json_type(raw) = 'object'),
    CONSTRAINT call_events_call_event_key UNIQUE (call_id, event_id)
) STRICT;
CREATE INDEX call_events_tenant_sequence_idx ON call_events (tenant_id, sequence);
