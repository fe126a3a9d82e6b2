-- Initial schema. The store only ever holds ciphertext, token hashes and metadata.
--
-- Names and ids use COLLATE "C" so that ORDER BY and the keyset cursors compare by
-- code point, exactly like SQLite's BINARY collation: pagination must not depend on
-- the server's locale, and both backends must return the same order.

CREATE TABLE credentials (
    id            text COLLATE "C" PRIMARY KEY,
    tenant_id     text NOT NULL,
    name          text COLLATE "C" NOT NULL,
    provider      text NOT NULL,
    options       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(options) = 'object'),
    ciphertext    bytea NOT NULL,
    key_id        integer NOT NULL,
    hint          text NOT NULL DEFAULT '',
    secret_fields jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(secret_fields) = 'array'),
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    version       integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    -- Named so the store can tell a name collision from any other unique violation.
    CONSTRAINT credentials_tenant_name_key UNIQUE (tenant_id, name)
);
-- Provider-filtered listing is ordered by name, so name completes the index.
CREATE INDEX credentials_tenant_provider_idx ON credentials (tenant_id, provider, name);
CREATE INDEX credentials_key_id_idx ON credentials (key_id);

CREATE TABLE tokens (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL,
    name        text NOT NULL,
    token_hash  text NOT NULL UNIQUE,
    scopes      jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(scopes) = 'array'),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz,
    revoked_at  timestamptz
);
-- Per-tenant listing is ordered by creation time.
CREATE INDEX tokens_tenant_idx ON tokens (tenant_id, created_at);

-- Encryptions performed per data key: random 96-bit nonces are only safe up to a bound.
CREATE TABLE key_usage (
    key_id      integer PRIMARY KEY,
    encryptions bigint NOT NULL DEFAULT 0 CHECK (encryptions >= 0)
);

CREATE TABLE audit_events (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL,
    action        text NOT NULL,
    outcome       text NOT NULL,
    tenant_id     text NOT NULL DEFAULT '',
    credential_id text NOT NULL DEFAULT '',
    actor         text NOT NULL DEFAULT '',
    request_id    text NOT NULL DEFAULT '',
    detail        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object')
);
-- Listing is newest first, optionally filtered by tenant or action.
CREATE INDEX audit_events_tenant_at_idx ON audit_events (tenant_id, at);
CREATE INDEX audit_events_action_at_idx ON audit_events (action, at);
CREATE INDEX audit_events_at_idx ON audit_events (at);
