"""Every SQL statement of the admin API, and the shaping of rows into response objects.

Each statement is one constant string: request values travel only as bind parameters
($1…), never spliced into SQL, and every ORDER BY is fixed here. Optional filters use
`($n IS NULL OR column = $n)` for that reason. List queries read the page and its total in
one REPEATABLE READ transaction, so `total` counts the same snapshot the items come from.

Key rows never include key_hash; thread details list their columns by name, so a column
added to the table later is shown only on purpose.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from core.quota import effective_month_fee

__all__ = [
    "count_active_keys",
    "get_key",
    "get_session",
    "get_thread",
    "insert_key",
    "key_row",
    "key_totals",
    "like_pattern",
    "list_keys",
    "list_payments",
    "list_sessions",
    "list_threads",
    "month_bounds",
    "page",
    "recharge_key",
    "update_key",
]

# --- keys -------------------------------------------------------------------------------
# fee_month is read only to compute the effective month fee (key_row) and is not shown.

_INSERT_KEY = """
INSERT INTO api_keys (name, email, role, group_id, key_hash, key_prefix, month_quota, balance, fee_month,
                      rate_limit_rpm)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING id, name, email, role, group_id, month_quota, month_fee, fee_month, balance, total_fee,
          created_at, updated_at, key_prefix, disabled, rate_limit_rpm
"""

_INSERT_PAYMENT = "INSERT INTO payments (key_id, fee) VALUES ($1, $2)"

_UPDATE_KEY = """
UPDATE api_keys SET
    name        = COALESCE($2, name),
    role        = COALESCE($3, role),
    group_id    = COALESCE($4, group_id),
    month_quota = COALESCE($5, month_quota),
    email       = COALESCE($6, email),
    disabled    = COALESCE($7, disabled),
    rate_limit_rpm = COALESCE($8, rate_limit_rpm),
    updated_at  = now()
WHERE id = $1
RETURNING id, name, email, role, group_id, month_quota, month_fee, fee_month, balance, total_fee,
          created_at, updated_at, key_prefix, disabled, rate_limit_rpm
"""

_RECHARGE_KEY = """
UPDATE api_keys SET balance = balance + $1, updated_at = now()
WHERE ($2::bigint IS NULL OR id = $2) AND ($3::bytea IS NULL OR key_hash = $3)
RETURNING id, name, email, role, group_id, month_quota, month_fee, fee_month, balance, total_fee,
          created_at, updated_at, key_prefix, disabled, rate_limit_rpm
"""

_GET_KEY = """
SELECT id, name, email, role, group_id, month_quota, month_fee, fee_month, balance, total_fee,
       created_at, updated_at, key_prefix, disabled, rate_limit_rpm
FROM api_keys WHERE id = $1
"""

_LIST_KEYS = """
SELECT id, name, email, role, group_id, month_quota, month_fee, fee_month, balance, total_fee,
       created_at, updated_at, key_prefix, disabled, rate_limit_rpm
FROM api_keys
WHERE ($1::text IS NULL OR name ILIKE $1 ESCAPE '\\' OR email ILIKE $1 ESCAPE '\\')
ORDER BY id DESC LIMIT $2 OFFSET $3
"""

_COUNT_KEYS = """
SELECT count(*) FROM api_keys
WHERE ($1::text IS NULL OR name ILIKE $1 ESCAPE '\\' OR email ILIKE $1 ESCAPE '\\')
"""

# --- payments ---------------------------------------------------------------------------

_LIST_PAYMENTS = """
SELECT id, key_id, fee, created_at FROM payments
WHERE ($1::bigint IS NULL OR key_id = $1)
ORDER BY id DESC LIMIT $2 OFFSET $3
"""

_COUNT_PAYMENTS = "SELECT count(*) FROM payments WHERE ($1::bigint IS NULL OR key_id = $1)"

# --- sessions ---------------------------------------------------------------------------

_LIST_SESSIONS = """
SELECT id, client_session_id AS "key", title, key_id, total_in_tokens, total_out_tokens, total_fee,
       currency, created_at, updated_at
FROM sessions
WHERE ($1::bigint IS NULL OR key_id = $1) AND ($2::text IS NULL OR title ILIKE $2 ESCAPE '\\')
ORDER BY id DESC LIMIT $3 OFFSET $4
"""

_COUNT_SESSIONS = """
SELECT count(*) FROM sessions
WHERE ($1::bigint IS NULL OR key_id = $1) AND ($2::text IS NULL OR title ILIKE $2 ESCAPE '\\')
"""

_GET_SESSION = """
SELECT id, client_session_id AS "key", title, key_id, total_in_tokens, total_out_tokens, total_fee,
       currency, created_at, updated_at
FROM sessions
WHERE id = $1 AND ($2::bigint IS NULL OR key_id = $2)
"""

# --- threads ----------------------------------------------------------------------------

_LIST_THREADS = """
SELECT id, prompt, completion, session_id, key_id, model, tokens_in, tokens_out, fee, created_at
FROM threads
WHERE ($1::bigint IS NULL OR session_id = $1)
  AND ($2::bigint IS NULL OR key_id = $2)
  AND ($3::text IS NULL OR prompt ILIKE $3 ESCAPE '\\' OR completion ILIKE $3 ESCAPE '\\')
ORDER BY id DESC LIMIT $4 OFFSET $5
"""

_COUNT_THREADS = """
SELECT count(*) FROM threads
WHERE ($1::bigint IS NULL OR session_id = $1)
  AND ($2::bigint IS NULL OR key_id = $2)
  AND ($3::text IS NULL OR prompt ILIKE $3 ESCAPE '\\' OR completion ILIKE $3 ESCAPE '\\')
"""

_GET_THREAD = """
SELECT id, event_id, key_id, session_id, model, bedrock_model_id, api, stream, prompt, completion,
       whole_prompt, tokens_in, tokens_out, cache_read_tokens, cache_write_tokens, price_in, price_out,
       price_cache_read, price_cache_write, fee, currency, invocation_latency_ms, first_byte_latency_ms,
       status, estimated, end_user, created_at, recorded_at
FROM threads
WHERE id = $1 AND ($2::bigint IS NULL OR key_id = $2)
"""

# --- statistics -------------------------------------------------------------------------

# The month sum applies core.quota.effective_month_fee's rule in SQL (summing in Python would
# load every key): a stored month fee counts only when its fee_month is the current month.
_KEY_TOTALS = """
SELECT count(*) AS count_key,
       count(*) FILTER (WHERE NOT disabled) AS active_key,
       COALESCE(sum(total_fee), 0) AS total_fee,
       COALESCE(sum(month_fee) FILTER (WHERE fee_month = $1), 0) AS total_month_fee
FROM api_keys
"""

_COUNT_ACTIVE_KEYS = """
SELECT count(DISTINCT key_id) FROM threads WHERE created_at >= $1 AND created_at < $2
"""


def like_pattern(q: str | None) -> str | None:
    """A substring pattern for `ILIKE … ESCAPE '\\'` in which `%`, `_` and `\\` match themselves."""
    if not q:
        return None
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def page(items: list[dict[str, Any]], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def key_row(record: asyncpg.Record, current_month: dt.date) -> dict[str, Any]:
    """A key as shown: the stored month fee counts only if it belongs to the current billing month."""
    row = dict(record)
    row["month_fee"] = effective_month_fee(row["month_fee"], row.pop("fee_month"), current_month)
    return row


def month_bounds(month: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """The instants at which billing month `month` and the month after it start, in time zone `tz`."""
    zone = ZoneInfo(tz)
    start = dt.datetime(month.year, month.month, 1, tzinfo=zone)
    following = dt.datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=zone)
    return start, following


async def insert_key(
    conn: asyncpg.Connection,
    *,
    name: str,
    email: str,
    role: str,
    group_id: int,
    key_hash: bytes,
    key_prefix: str,
    month_quota: Decimal,
    balance: Decimal,
    fee_month: dt.date,
    rate_limit_rpm: int = 0,
) -> asyncpg.Record:
    """Create a key and, when it starts with money, the payment that explains that money.

    One transaction: the key and its opening payment land together or not at all.
    """
    async with conn.transaction():
        record: asyncpg.Record = await conn.fetchrow(
            _INSERT_KEY,
            name,
            email,
            role,
            group_id,
            key_hash,
            key_prefix,
            month_quota,
            balance,
            fee_month,
            rate_limit_rpm,
        )
        if balance > 0:
            await conn.execute(_INSERT_PAYMENT, record["id"], balance)
    return record


async def update_key(
    conn: asyncpg.Connection | asyncpg.Pool,
    key_id: int,
    *,
    name: str | None,
    role: str | None,
    group_id: int | None,
    month_quota: Decimal | None,
    email: str | None,
    disabled: bool | None,
    rate_limit_rpm: int | None = None,
) -> asyncpg.Record | None:
    """Change the given fields (None = unchanged); None when there is no such key.

    One UPDATE statement, so atomic. It leaves the billing columns (month_fee, fee_month,
    balance, total_fee) alone: an edit can neither overwrite a concurrent charge nor hide a
    month change (the month fee resets by fee_month, never by updated_at).
    """
    return await conn.fetchrow(
        _UPDATE_KEY, key_id, name, role, group_id, month_quota, email, disabled, rate_limit_rpm
    )


async def recharge_key(
    conn: asyncpg.Connection, amount: Decimal, *, key_id: int | None, key_hash: bytes | None
) -> asyncpg.Record | None:
    """Add `amount` to the balance of the key matching every given selector and record the payment.

    One transaction: the payment row and the balance change land together or not at all.
    The balance grows in SQL (`balance + $1`), never by read-modify-write in Python, so a
    concurrent charge by the meter is not overwritten; the UPDATE's row lock orders the two.
    Returns None (and writes nothing) when no key matches.
    """
    async with conn.transaction():
        record: asyncpg.Record | None = await conn.fetchrow(_RECHARGE_KEY, amount, key_id, key_hash)
        if record is not None:
            await conn.execute(_INSERT_PAYMENT, record["id"], amount)
    return record


async def get_key(conn: asyncpg.Connection | asyncpg.Pool, key_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(_GET_KEY, key_id)


async def list_keys(
    pool: asyncpg.Pool, *, q: str | None, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    pattern = like_pattern(q)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        records = await conn.fetch(_LIST_KEYS, pattern, limit, offset)
        total: int = await conn.fetchval(_COUNT_KEYS, pattern)
    return records, total


async def list_payments(
    pool: asyncpg.Pool, *, key_id: int | None, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        records = await conn.fetch(_LIST_PAYMENTS, key_id, limit, offset)
        total: int = await conn.fetchval(_COUNT_PAYMENTS, key_id)
    return records, total


async def list_sessions(
    pool: asyncpg.Pool, *, key_id: int | None, q: str | None, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    pattern = like_pattern(q)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        records = await conn.fetch(_LIST_SESSIONS, key_id, pattern, limit, offset)
        total: int = await conn.fetchval(_COUNT_SESSIONS, key_id, pattern)
    return records, total


async def get_session(pool: asyncpg.Pool, session_id: int, *, key_id: int | None) -> asyncpg.Record | None:
    """One session; with `key_id`, only if it belongs to that key (another key's is "not found")."""
    return await pool.fetchrow(_GET_SESSION, session_id, key_id)


async def list_threads(
    pool: asyncpg.Pool,
    *,
    session_id: int | None,
    key_id: int | None,
    q: str | None,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    pattern = like_pattern(q)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        records = await conn.fetch(_LIST_THREADS, session_id, key_id, pattern, limit, offset)
        total: int = await conn.fetchval(_COUNT_THREADS, session_id, key_id, pattern)
    return records, total


async def get_thread(pool: asyncpg.Pool, thread_id: int, *, key_id: int | None) -> asyncpg.Record | None:
    """One full thread; with `key_id`, only if it belongs to that key."""
    return await pool.fetchrow(_GET_THREAD, thread_id, key_id)


async def key_totals(conn: asyncpg.Connection, current_month: dt.date) -> asyncpg.Record:
    """count_key, active_key (not disabled), total_fee and total_month_fee (this month's fees)."""
    record: asyncpg.Record = await conn.fetchrow(_KEY_TOTALS, current_month)
    return record


async def count_active_keys(conn: asyncpg.Connection, start: dt.datetime, end: dt.datetime) -> int:
    """Distinct keys with at least one thread started in [start, end)."""
    count: int = await conn.fetchval(_COUNT_ACTIVE_KEYS, start, end)
    return count
