-- BRProxy schema, version 2: the model catalogue, editable by admins.
-- The built-in catalogue lives in code (core/catalogue.py); this table holds only what admins
-- changed or added. A NULL column keeps the built-in value; a name that is not built in adds
-- a model. Both the translators and the meters load it at start and follow every change.

CREATE TABLE model_overrides (
    name              text        PRIMARY KEY,
    base_id           text,
    provider          text,
    kind              text        CHECK (kind IN ('chat', 'embedding')),
    aliases           text[],
    profiles          text[],
    profile_only      boolean,
    geo_premium       boolean,
    capabilities      text[],
    betas             text[],
    context_window    integer     CHECK (context_window > 0),
    price_input       numeric     CHECK (price_input >= 0),        -- USD per million tokens
    price_output      numeric     CHECK (price_output >= 0),
    price_cache_read  numeric     CHECK (price_cache_read >= 0),
    price_cache_write numeric     CHECK (price_cache_write >= 0),
    enabled           boolean,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Optional per-key allowlists: a key with a row may call only these models (catalogue
-- names); a key without one may call every enabled model.
CREATE TABLE key_model_access (
    key_id     bigint      PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    models     text[]      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Any change is announced; followers reload both (small) tables, so the payload is only
-- the table's name.
CREATE FUNCTION brproxy_notify_catalogue_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('brproxy_catalogue_changed', TG_TABLE_NAME);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER model_overrides_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON model_overrides
    FOR EACH STATEMENT EXECUTE FUNCTION brproxy_notify_catalogue_change();

CREATE TRIGGER key_model_access_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON key_model_access
    FOR EACH STATEMENT EXECUTE FUNCTION brproxy_notify_catalogue_change();
