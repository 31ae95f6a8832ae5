-- Version 4: reservations outlive the authz process that made them.

-- Reservations of calls still in flight whose authz replica has stopped: moved here by the
-- replica itself on a graceful stop, or by its successor on the same data directory after a
-- crash (from the replica's journal). Every replica counts them against the key's money
-- like grants (see authz/budget_store.py); the meter deletes a row in the transaction that
-- records, or releases, its call, so the money is held exactly until the call is billed.
CREATE TABLE held_reservations (
    request_id text        PRIMARY KEY,
    key_id     bigint      NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    amount     numeric     NOT NULL CHECK (amount >= 0),
    held_until timestamptz NOT NULL
);
CREATE INDEX held_reservations_key ON held_reservations (key_id);

-- Calls that ended without anything to bill (refused, or failed before Bedrock billed), as
-- the meter announced them: an authz replica adopting a dead one's reservations frees those
-- that ended while nobody was listening. Kept for as long as a reservation can live.
CREATE TABLE released_requests (
    request_id  text        PRIMARY KEY,
    released_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX released_requests_at ON released_requests (released_at);
