"""What the authz tests share: a key in a real Postgres, and SQL from a test."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import asyncpg

from core.quota import billing_month

MONTH = billing_month("UTC")


def sql(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(url)
        try:
            return list(await connection.fetch(query, *args))
        finally:
            await connection.close()

    return asyncio.run(run())


def new_key(url: str, *, balance: str = "0", quota: str = "0") -> int:
    rows = sql(
        url,
        "INSERT INTO api_keys (name, key_hash, key_prefix, month_quota, balance, fee_month)"
        " VALUES ('k', $1, 'br-test', $2, $3, $4) RETURNING id",
        uuid.uuid4().bytes,
        Decimal(quota),
        Decimal(balance),
        MONTH,
    )
    return int(rows[0]["id"])
