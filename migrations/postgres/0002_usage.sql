-- Usage accounting: one row per provider call, written in batches by the hub's
-- UsageRecorder, summed by UsageService.GetUsage. No content, no secrets: ids,
-- names, counts, timings and the status the call ended with.

CREATE TABLE usage_records (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL,  -- when the call started
    tenant_id       text NOT NULL,
    credential_id   text NOT NULL DEFAULT '',
    credential_name text NOT NULL DEFAULT '',
    provider        text NOT NULL DEFAULT '',
    model           text NOT NULL DEFAULT '',
    operation       text NOT NULL,  -- chat, stream_chat, embed, rerank
    route           text NOT NULL DEFAULT '',  -- the route the caller named, if any
    target          text NOT NULL DEFAULT '',  -- the route's target that answered
    input_tokens    bigint NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens   bigint NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cached_tokens   bigint NOT NULL DEFAULT 0 CHECK (cached_tokens >= 0),
    latency_ms      double precision NOT NULL DEFAULT 0,
    upstream_ms     double precision NOT NULL DEFAULT 0,
    status          text NOT NULL,  -- "OK" or the gRPC status code name
    reason          text NOT NULL DEFAULT '',
    request_id      text NOT NULL DEFAULT ''
);
-- Every query is one tenant over a time range; the range scan of this index serves
-- the unfiltered ones (and the provider filter, which rarely narrows much).
CREATE INDEX usage_records_tenant_at_idx ON usage_records (tenant_id, at);
-- The selective filters of GetUsage, for a tenant with much traffic over a long range.
CREATE INDEX usage_records_tenant_credential_at_idx ON usage_records (tenant_id, credential_id, at);
CREATE INDEX usage_records_tenant_model_at_idx ON usage_records (tenant_id, model, at);
