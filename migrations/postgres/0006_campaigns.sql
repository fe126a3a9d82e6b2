-- Campaigns: durable batches of calls (integration_hub/telephony/campaigns.py).
--
-- A campaign's rows (campaign_rows) move pending -> calling -> done (or back to
-- pending for a retry), or pending -> canceled. A row is claimed (calling, attempts + 1,
-- claimed_by, claimed_until, slot_at) in one transaction before its call is placed; its
-- call is the calls row with (campaign_id, campaign_row, attempt), whose idempotency key
-- campaign:<id>:<row>:<attempt> keeps one call per attempt.
--
-- campaign_pacing holds, per credential, the start time of the next free call slot:
-- every claim reserves its rows' slots (1 / calls_per_second apart) under that row's
-- lock, so the rate holds across workers and replicas, and across a restart.

CREATE TABLE campaigns (
    id                   text COLLATE "C" PRIMARY KEY,
    tenant_id            text NOT NULL,
    credential_id        text COLLATE "C" NOT NULL,
    name                 text NOT NULL DEFAULT '',
    from_number          text NOT NULL,
    action               jsonb NOT NULL CHECK (jsonb_typeof(action) = 'object'),
    state                text NOT NULL CHECK (state IN ('running', 'paused', 'canceled', 'completed')),
    calls_per_second     double precision NOT NULL CHECK (calls_per_second > 0),
    max_concurrent_calls integer NOT NULL CHECK (max_concurrent_calls > 0),
    -- {"on": ["busy", "no-answer"], "max_attempts": 3, "delay_ms": 60000}
    retry                jsonb NOT NULL CHECK (jsonb_typeof(retry) = 'object'),
    -- {"time_zone": "Asia/Kolkata", "start": "09:00", "end": "18:00"}; NULL: any time
    calling_window       jsonb CHECK (calling_window IS NULL OR jsonb_typeof(calling_window) = 'object'),
    ring_timeout         integer,
    time_limit           integer,
    machine_detection    text NOT NULL DEFAULT 'off',
    total_rows           bigint NOT NULL,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);
CREATE INDEX campaigns_tenant_created_idx ON campaigns (tenant_id, created_at DESC, id DESC);
CREATE INDEX campaigns_active_idx ON campaigns (state) WHERE state <> 'completed';
CREATE INDEX campaigns_credential_idx ON campaigns (credential_id) WHERE state <> 'completed';

CREATE TABLE campaign_rows (
    campaign_id      text COLLATE "C" NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    row_index        bigint NOT NULL,
    to_number        text NOT NULL,
    variables        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(variables) = 'object'),
    state            text NOT NULL CHECK (state IN ('pending', 'calling', 'done', 'canceled')),
    -- The number of the row's latest attempt (the idempotency key's); unplaced counts
    -- those that never reached the provider and do not count against max_attempts.
    attempts         integer NOT NULL DEFAULT 0,
    unplaced         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    slot_at          timestamptz,
    last_call_id     text COLLATE "C",
    outcome          text NOT NULL DEFAULT '',
    error            text NOT NULL DEFAULT '',
    claimed_by       text,
    claimed_until    timestamptz,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (campaign_id, row_index)
);
CREATE INDEX campaign_rows_pending_idx ON campaign_rows (campaign_id, row_index) WHERE state = 'pending';
CREATE INDEX campaign_rows_calling_idx ON campaign_rows (campaign_id, row_index) WHERE state = 'calling';

CREATE TABLE campaign_pacing (
    credential_id    text COLLATE "C" PRIMARY KEY,
    next_slot_at     timestamptz NOT NULL
);
