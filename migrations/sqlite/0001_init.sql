-- Initial schema; mirrors migrations/postgres/0001_init.sql.
--
-- STRICT tables (SQLite >= 3.37) reject values of the wrong type, so a str can never
-- land where ciphertext bytes belong. Timestamps are ISO-8601 UTC text of fixed width
-- ("2025-01-31T12:00:00.000000+00:00"), which sorts lexically in time order.
-- JSON columns hold JSON text; BINARY collation orders names by code point.

CREATE TABLE credentials (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    provider      TEXT NOT NULL,
    options       TEXT NOT NULL DEFAULT '{}' CHECK (json_type(options) = 'object'),
    ciphertext    BLOB NOT NULL,
    key_id        INTEGER NOT NULL,
    hint          TEXT NOT NULL DEFAULT '',
    secret_fields TEXT NOT NULL DEFAULT '[]' CHECK (json_type(secret_fields) = 'array'),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    version       INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
    UNIQUE (tenant_id, name)
) STRICT;
-- Provider-filtered listing is ordered by name, so name completes the index.
CREATE INDEX credentials_tenant_provider_idx ON credentials (tenant_id, provider, name);
CREATE INDEX credentials_key_id_idx ON credentials (key_id);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    scopes      TEXT NOT NULL DEFAULT '[]' CHECK (json_type(scopes) = 'array'),
    created_at  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT
) STRICT;
-- Per-tenant listing is ordered by creation time.
CREATE INDEX tokens_tenant_idx ON tokens (tenant_id, created_at);

-- Encryptions performed per data key: random 96-bit nonces are only safe up to a bound.
CREATE TABLE key_usage (
    key_id      INTEGER PRIMARY KEY,
    encryptions INTEGER NOT NULL DEFAULT 0 CHECK (encryptions >= 0)
) STRICT;

CREATE TABLE audit_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            TEXT NOT NULL,
    action        TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    tenant_id     TEXT NOT NULL DEFAULT '',
    credential_id TEXT NOT NULL DEFAULT '',
    actor         TEXT NOT NULL DEFAULT '',
    request_id    TEXT NOT NULL DEFAULT '',
    detail        TEXT NOT NULL DEFAULT '{}' CHECK (json_type(detail) = 'object')
) STRICT;
-- Listing is newest first, optionally filtered by tenant or action.
CREATE INDEX audit_events_tenant_at_idx ON audit_events (tenant_id, at);
CREATE INDEX audit_events_action_at_idx ON audit_events (action, at);
CREATE INDEX audit_events_at_idx ON audit_events (at);
