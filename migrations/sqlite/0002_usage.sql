-- Usage accounting; mirrors migrations/postgres/0002_usage.sql.
-- "at" is fixed-width ISO-8601 UTC text, so text order is time order and date(at)
-- is the UTC day.

CREATE TABLE usage_records (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    credential_id   TEXT NOT NULL DEFAULT '',
    credential_name TEXT NOT NULL DEFAULT '',
    provider        TEXT NOT NULL DEFAULT '',
    model           TEXT NOT NULL DEFAULT '',
    operation       TEXT NOT NULL,
    route           TEXT NOT NULL DEFAULT '',
    target          TEXT NOT NULL DEFAULT '',
    input_tokens    INTEGER NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens   INTEGER NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cached_tokens   INTEGER NOT NULL DEFAULT 0 CHECK (cached_tokens >= 0),
    latency_ms      REAL NOT NULL DEFAULT 0,
    upstream_ms     REAL NOT NULL DEFAULT 0,
    status          TEXT NOT NULL,
    reason          TEXT NOT NULL DEFAULT '',
    request_id      TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX usage_records_tenant_at_idx ON usage_records (tenant_id, at);
CREATE INDEX usage_records_tenant_credential_at_idx ON usage_records (tenant_id, credential_id, at);
CREATE INDEX usage_records_tenant_model_at_idx ON usage_records (tenant_id, model, at);
