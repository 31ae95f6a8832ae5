-- BRProxy schema, version 1.
-- Money is `numeric` without a fixed scale: fees are exact (tokens × decimal price / 1e6)
-- and sums of fees never drift. Token counts are bigint.

CREATE TABLE api_keys (
    id          bigserial PRIMARY KEY,
    name        text        NOT NULL,
    email       text        NOT NULL DEFAULT '',
    role        text        NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    group_id    integer     NOT NULL DEFAULT 0,
    key_hash    bytea       NOT NULL UNIQUE,   -- SHA-256 of the key; the key itself is never stored
    key_prefix  text        NOT NULL,          -- 'br-' + 4 characters, safe to list
    month_quota numeric     NOT NULL DEFAULT 0 CHECK (month_quota >= 0),
    month_fee   numeric     NOT NULL DEFAULT 0,
    fee_month   date        NOT NULL,          -- first day of the month month_fee belongs to
    balance     numeric     NOT NULL DEFAULT 0,
    total_fee   numeric     NOT NULL DEFAULT 0,
    disabled    boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_name_idx ON api_keys (lower(name));

CREATE TABLE payments (
    id         bigserial PRIMARY KEY,
    key_id     bigint      NOT NULL REFERENCES api_keys (id),
    fee        numeric     NOT NULL CHECK (fee > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_key_idx ON payments (key_id, id DESC);

-- One client conversation: found by (key, Session-Id header), never by the client's id alone.
CREATE TABLE sessions (
    id                bigserial PRIMARY KEY,
    key_id            bigint      NOT NULL REFERENCES api_keys (id),
    client_session_id text        NOT NULL,
    title             text        NOT NULL DEFAULT '',
    total_in_tokens   bigint      NOT NULL DEFAULT 0,
    total_out_tokens  bigint      NOT NULL DEFAULT 0,
    total_fee         numeric     NOT NULL DEFAULT 0,
    currency          text        NOT NULL DEFAULT 'USD',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (key_id, client_session_id)
);
CREATE INDEX sessions_key_idx ON sessions (key_id, id DESC);

-- One Bedrock call. event_id is the translator's idempotency key: a replayed usage event
-- hits the unique constraint and is billed once.
CREATE TABLE threads (
    id                    bigserial PRIMARY KEY,
    event_id              uuid        NOT NULL UNIQUE,
    key_id                bigint      NOT NULL REFERENCES api_keys (id),
    session_id            bigint      REFERENCES sessions (id),
    model                 text        NOT NULL,
    bedrock_model_id      text        NOT NULL,
    api                   text        NOT NULL DEFAULT 'openai.chat',
    stream                boolean     NOT NULL DEFAULT false,
    prompt                text        NOT NULL DEFAULT '',
    completion            text        NOT NULL DEFAULT '',
    whole_prompt          jsonb,
    tokens_in             bigint      NOT NULL DEFAULT 0,
    tokens_out            bigint      NOT NULL DEFAULT 0,
    cache_read_tokens     bigint      NOT NULL DEFAULT 0,
    cache_write_tokens    bigint      NOT NULL DEFAULT 0,
    price_in              numeric     NOT NULL,   -- USD per million tokens, as billed
    price_out             numeric     NOT NULL,
    price_cache_read      numeric     NOT NULL DEFAULT 0,
    price_cache_write     numeric     NOT NULL DEFAULT 0,
    fee                   numeric     NOT NULL,
    currency              text        NOT NULL DEFAULT 'USD',
    invocation_latency_ms integer,
    first_byte_latency_ms integer,
    status                text        NOT NULL DEFAULT 'ok',
    estimated             boolean     NOT NULL DEFAULT false,
    end_user              text,
    created_at            timestamptz NOT NULL,   -- when the call started
    recorded_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX threads_key_idx ON threads (key_id, id DESC);
CREATE INDEX threads_session_idx ON threads (session_id, id DESC);

-- Every change to a key is announced, so authz caches see it within milliseconds on
-- every replica. The payload carries what authz decides on, so it needs no query.
CREATE FUNCTION brproxy_notify_key_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('brproxy_key_changed', json_build_object('id', OLD.id, 'deleted', true)::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('brproxy_key_changed', json_build_object(
        'id', NEW.id,
        'key_hash', encode(NEW.key_hash, 'hex'),
        'role', NEW.role,
        'month_quota', NEW.month_quota::text,
        'month_fee', NEW.month_fee::text,
        'fee_month', NEW.fee_month::text,
        'balance', NEW.balance::text,
        'disabled', NEW.disabled
    )::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER api_keys_notify
    AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION brproxy_notify_key_change();
