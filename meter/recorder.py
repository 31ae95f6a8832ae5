"""Writing priced usage to Postgres: one transaction per batch, idempotent per event.

A batch commits as a whole or not at all: its threads, the session totals and the key
totals land together. Each thread row is keyed by its event id (unique), and only rows
actually inserted count toward the totals, so a replayed event changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

import asyncpg

from meter.billing import ThreadRow, session_title

__all__ = ["RECORDED_CHANNEL", "record_batch"]

log = logging.getLogger("meter.recorder")

_ENSURE_SESSIONS = """
INSERT INTO sessions (key_id, client_session_id, title)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])
ON CONFLICT (key_id, client_session_id) DO NOTHING
"""

_SESSION_IDS = """
SELECT s.id, s.key_id, s.client_session_id
FROM sessions s
JOIN unnest($1::bigint[], $2::text[]) AS wanted(key_id, client_session_id)
  ON s.key_id = wanted.key_id AND s.client_session_id = wanted.client_session_id
"""

# One statement: insert the threads that are new, then add exactly those to their
# sessions and keys. The key update is the contract's money rule, in SQL so that
# concurrent writers never read-modify-write: this month's fee starts from zero when the
# stored month is not the current one, the quota is spent first, and only the part of
# the fee beyond what is left of the quota comes out of the balance.
_RECORD = """
WITH incoming AS (
    SELECT * FROM unnest(
        $1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::boolean[],
        $8::text[], $9::text[], $10::jsonb[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[],
        $15::numeric[], $16::numeric[], $17::numeric[], $18::numeric[], $19::numeric[],
        $20::integer[], $21::integer[], $22::text[], $23::boolean[], $24::text[], $25::timestamptz[]
    ) AS t(event_id, key_id, session_id, model, bedrock_model_id, api, stream,
           prompt, completion, whole_prompt, tokens_in, tokens_out, cache_read_tokens, cache_write_tokens,
           price_in, price_out, price_cache_read, price_cache_write, fee,
           invocation_latency_ms, first_byte_latency_ms, status, estimated, end_user, created_at)
),
inserted AS (
    INSERT INTO threads (event_id, key_id, session_id, model, bedrock_model_id, api, stream,
                         prompt, completion, whole_prompt, tokens_in, tokens_out,
                         cache_read_tokens, cache_write_tokens,
                         price_in, price_out, price_cache_read, price_cache_write, fee,
                         invocation_latency_ms, first_byte_latency_ms, status, estimated, end_user,
                         created_at)
    SELECT * FROM incoming
    ON CONFLICT (event_id) DO NOTHING
    RETURNING key_id, session_id, model, tokens_in, tokens_out, cache_read_tokens, cache_write_tokens, fee,
              created_at
),
session_totals AS (
    UPDATE sessions s
    SET total_in_tokens = s.total_in_tokens + a.tokens_in,
        total_out_tokens = s.total_out_tokens + a.tokens_out,
        total_fee = s.total_fee + a.fee,
        updated_at = now()
    FROM (SELECT session_id, sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out, sum(fee) AS fee
          FROM inserted WHERE session_id IS NOT NULL GROUP BY session_id) a
    WHERE s.id = a.session_id
    RETURNING s.id
),
daily AS (
    INSERT INTO usage_daily AS d (day, key_id, model, requests, tokens_in, tokens_out,
                                  cache_read_tokens, cache_write_tokens, fee)
    SELECT (created_at AT TIME ZONE $27)::date, key_id, model, count(*), sum(tokens_in), sum(tokens_out),
           sum(cache_read_tokens), sum(cache_write_tokens), sum(fee)
    FROM inserted GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (day, key_id, model) DO UPDATE
    SET requests = d.requests + EXCLUDED.requests,
        tokens_in = d.tokens_in + EXCLUDED.tokens_in,
        tokens_out = d.tokens_out + EXCLUDED.tokens_out,
        cache_read_tokens = d.cache_read_tokens + EXCLUDED.cache_read_tokens,
        cache_write_tokens = d.cache_write_tokens + EXCLUDED.cache_write_tokens,
        fee = d.fee + EXCLUDED.fee
    RETURNING 1
),
key_totals AS (
    UPDATE api_keys k
    SET month_fee = (CASE WHEN k.fee_month = $26 THEN k.month_fee ELSE 0 END) + a.fee,
        balance = k.balance - (a.fee - LEAST(
            GREATEST(k.month_quota - (CASE WHEN k.fee_month = $26 THEN k.month_fee ELSE 0 END), 0),
            a.fee)),
        total_fee = k.total_fee + a.fee,
        fee_month = $26
    FROM (SELECT key_id, sum(fee) AS fee FROM inserted GROUP BY key_id) a
    WHERE k.id = a.key_id
    RETURNING k.id
)
SELECT (SELECT count(*) FROM inserted) AS inserted,
       (SELECT count(*) FROM session_totals) AS sessions,
       (SELECT count(*) FROM daily) AS days,
       (SELECT count(*) FROM key_totals) AS keys
"""

_FREE_HELD = "DELETE FROM held_reservations WHERE request_id = ANY($1::text[])"
_NOTE_RELEASED = """
INSERT INTO released_requests (request_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING
"""

RECORDED_CHANNEL = "brproxy_usage_recorded"
"""authz frees a request's reservation when its id is announced here (see authz/budget.py)."""
_NOTIFY_LIMIT = 7900  # Postgres refuses payloads of 8000 bytes or more


def _recorded_payloads(done: Sequence[tuple[int, str]]) -> list[str]:
    """`key_id:event_id` pairs, comma-separated, in payloads under the NOTIFY size limit."""
    payloads: list[str] = []
    current: list[str] = []
    size = 0
    for key_id, event_id in done:
        item = f"{key_id}:{event_id}"
        if current and size + len(item) + 1 > _NOTIFY_LIMIT:
            payloads.append(",".join(current))
            current, size = [], 0
        current.append(item)
        size += len(item) + 1
    if current:
        payloads.append(",".join(current))
    return payloads


async def _session_ids(
    connection: asyncpg.Connection, rows: Sequence[ThreadRow]
) -> dict[tuple[int, str], int]:
    first_prompt: dict[tuple[int, str], str] = {}
    for row in rows:
        if row.client_session_id is not None:
            first_prompt.setdefault((row.key_id, row.client_session_id), row.prompt)
    if not first_prompt:
        return {}
    # Sorted so that concurrent writers lock session rows in the same order.
    wanted = sorted(first_prompt)
    key_ids = [k for k, _ in wanted]
    client_ids = [c for _, c in wanted]
    titles = [session_title(first_prompt[w]) for w in wanted]
    await connection.execute(_ENSURE_SESSIONS, key_ids, client_ids, titles)
    found = await connection.fetch(_SESSION_IDS, key_ids, client_ids)
    return {(r["key_id"], r["client_session_id"]): r["id"] for r in found}


async def record_batch(
    connection: asyncpg.Connection,
    rows: Sequence[ThreadRow],
    current_month: dt.date,
    timezone: str = "UTC",
    released: Sequence[tuple[int, str]] = (),
) -> int:
    """Record priced threads and their totals in one transaction; returns how many were new.

    Rows whose key does not exist are logged and skipped (they cannot be billed to anyone).
    Every event of the batch, recorded now or before, and every `released` (key id, event
    id) pair, is announced on RECORDED_CHANNEL; the announcement is part of the transaction,
    so authz hears of a request's cost exactly when the cost is committed.
    """
    if not rows and not released:
        return 0
    async with connection.transaction():
        existing = {
            r["id"]
            for r in await connection.fetch(
                "SELECT id FROM api_keys WHERE id = ANY($1::bigint[])", list({row.key_id for row in rows})
            )
        }
        valid = [row for row in rows if row.key_id in existing]
        for row in rows:
            if row.key_id not in existing:
                log.error(
                    "usage event %s names key %d, which does not exist; skipped", row.event_id, row.key_id
                )
        # Keys locked in id order, the same in every writer, so batches never deadlock.
        valid.sort(key=lambda row: row.key_id)
        sessions = await _session_ids(connection, valid)
        columns: list[list[object]] = [[] for _ in range(25)]
        for row in valid:
            session_id = sessions.get((row.key_id, row.client_session_id)) if row.client_session_id else None
            values = (
                row.event_id, row.key_id, session_id, row.model, row.bedrock_model_id, row.api, row.stream,
                row.prompt, row.completion, row.whole_prompt, row.tokens_in, row.tokens_out,
                row.cache_read_tokens, row.cache_write_tokens,
                row.prices.input, row.prices.output, row.prices.cache_read, row.prices.cache_write, row.fee,
                row.invocation_latency_ms, row.first_byte_latency_ms, row.status, row.estimated, row.end_user,
                row.created_at,
            )  # fmt: skip
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        inserted = 0
        if valid:
            result = await connection.fetchrow(_RECORD, *columns, current_month, timezone)
            assert result is not None
            inserted = int(result["inserted"])
        done = [(row.key_id, str(row.event_id)) for row in valid] + list(released)
        for payload in _recorded_payloads(done):
            await connection.execute("SELECT pg_notify($1, $2)", RECORDED_CHANNEL, payload)
        # Reservations a stopped authz replica left in Postgres are freed with their calls' cost
        # committed (or their release noted) in this same transaction: never before, never twice.
        await connection.execute(_FREE_HELD, [event_id for _, event_id in done])
        if released:
            await connection.execute(_NOTE_RELEASED, [event_id for _, event_id in released])
        return inserted
