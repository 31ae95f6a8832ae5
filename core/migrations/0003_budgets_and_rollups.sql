-- Version 3: bounded overspend (budget grants), shared rate limits, daily usage rollups.

-- Requests per minute a key may make (0 = no limit), enforced across all authz replicas.
ALTER TABLE api_keys ADD COLUMN rate_limit_rpm integer NOT NULL DEFAULT 0 CHECK (rate_limit_rpm >= 0);

-- Live authz replicas. A replica whose heartbeat is older than a few seconds is dead:
-- its grants no longer count against the keys' budgets.
CREATE TABLE authz_replicas (
    replica_id   text        PRIMARY KEY,
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- The money each authz replica may commit to requests in flight, per key. A replica
-- admits requests locally against its grant; it asks for a larger grant with one atomic
-- statement that locks the key row and checks that all live replicas' grants together
-- stay within the key's headroom (quota left + balance). See authz/budget.py.
CREATE TABLE budget_grants (
    replica_id text        NOT NULL REFERENCES authz_replicas (replica_id) ON DELETE CASCADE,
    key_id     bigint      NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    amount     numeric     NOT NULL CHECK (amount >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_id, replica_id)
);

-- Requests admitted per key per one-minute window, across replicas (leased in chunks).
CREATE TABLE rate_windows (
    key_id       bigint      NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    window_start timestamptz NOT NULL,
    used         integer     NOT NULL,
    PRIMARY KEY (key_id, window_start)
);

-- Usage per day (in the billing time zone), key and model; maintained by the meter in the
-- same transaction as the threads, so it can always be rebuilt from them and equals them.
CREATE TABLE usage_daily (
    day                date    NOT NULL,
    key_id             bigint  NOT NULL REFERENCES api_keys (id),
    model              text    NOT NULL,
    requests           bigint  NOT NULL DEFAULT 0,
    tokens_in          bigint  NOT NULL DEFAULT 0,
    tokens_out         bigint  NOT NULL DEFAULT 0,
    cache_read_tokens  bigint  NOT NULL DEFAULT 0,
    cache_write_tokens bigint  NOT NULL DEFAULT 0,
    fee                numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (day, key_id, model)
);
CREATE INDEX usage_daily_key_idx ON usage_daily (key_id, day);

-- The key notification carries the whole row (minus what authz never needs), so columns
-- added by later migrations reach authz without another change here. Numbers are exact
-- JSON numerals; readers parse them as decimals.
CREATE OR REPLACE FUNCTION brproxy_notify_key_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('brproxy_key_changed', json_build_object('id', OLD.id, 'deleted', true)::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('brproxy_key_changed', (
        to_jsonb(NEW) - 'name' - 'email' - 'key_prefix' - 'created_at' - 'updated_at'
        || jsonb_build_object('key_hash', encode(NEW.key_hash, 'hex'))
    )::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
