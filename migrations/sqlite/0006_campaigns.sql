-- Campaigns: mirrors migrations/postgres/0006_campaigns.sql. Timestamps are fixed-width
-- ISO-8601 UTC text (text order is time order); JSON columns are text. SQLite runs one
-- writer at a time, so a claim (BEGIN IMMEDIATE) is serialised without row locks.

CREATE TABLE campaigns (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL,
    credential_id        TEXT NOT NULL,
    name                 TEXT NOT NULL DEFAULT '',
    from_number          TEXT NOT NULL,
    action               TEXT NOT NULL CHECK (json_type(action) = 'object'),
    state                TEXT NOT NULL CHECK (state IN ('running', 'paused', 'canceled', 'completed')),
    calls_per_second     REAL NOT NULL CHECK (calls_per_second > 0),
    max_concurrent_calls INTEGER NOT NULL CHECK (max_concurrent_calls > 0),
    retry                TEXT NOT NULL CHECK (json_type(retry) = 'object'),
    calling_window       TEXT CHECK (calling_window IS NULL OR json_type(calling_window) = 'object'),
    ring_timeout         INTEGER,
    time_limit           INTEGER,
    machine_detection    TEXT NOT NULL DEFAULT 'off',
    total_rows           INTEGER NOT NULL,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
) STRICT;
CREATE INDEX campaigns_tenant_created_idx ON campaigns (tenant_id, created_at DESC, id DESC);
CREATE INDEX campaigns_active_idx ON campaigns (state) WHERE state <> 'completed';
CREATE INDEX campaigns_credential_idx ON campaigns (credential_id) WHERE state <> 'completed';

CREATE TABLE campaign_rows (
    campaign_id      TEXT NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    row_index        INTEGER NOT NULL,
    to_number        TEXT NOT NULL,
    variables        TEXT NOT NULL DEFAULT '{}' CHECK (json_type(variables) = 'object'),
    state            TEXT NOT NULL CHECK (state IN ('pending', 'calling', 'done', 'canceled')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    unplaced         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    slot_at          TEXT,
    last_call_id     TEXT,
    outcome          TEXT NOT NULL DEFAULT '',
    error            TEXT NOT NULL DEFAULT '',
    claimed_by       TEXT,
    claimed_until    TEXT,
    updated_at       TEXT NOT NULL,
    PRIMARY KEY (campaign_id, row_index)
) STRICT;
CREATE INDEX campaign_rows_pending_idx ON campaign_rows (campaign_id, row_index) WHERE state = 'pending';
CREATE INDEX campaign_rows_calling_idx ON campaign_rows (campaign_id, row_index) WHERE state = 'calling';

CREATE TABLE campaign_pacing (
    credential_id    TEXT PRIMARY KEY,
    next_slot_at     TEXT NOT NULL
) STRICT;
