"""Helpers for the admin API tests: Envoy's caller headers, envelope checks (kept in
tests/envelopes.py, shared with the end-to-end tests, and offered here too), and rows written
directly with SQL (as the meter would) for the routes that only read them.

Named uniquely (not `helpers.py`) because test folders here have no `__init__.py`, so every
importable module under tests/ shares one namespace.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
from envelopes import error_message as error_message
from envelopes import ok_data as ok_data

from core.api_keys import display_prefix, generate_key, hash_key
from core.internal_headers import INTERNAL_TOKEN, KEY_ID, KEY_ROLE
from core.quota import billing_month

TEST_INTERNAL_TOKEN = "internal-token-for-the-admin-api-tests-0123"
FROM_THE_EDGE = {INTERNAL_TOKEN: TEST_INTERNAL_TOKEN}
"""The internal token Envoy adds to every request; the `client` fixture sends it."""

BOOTSTRAP = {KEY_ID: "0", KEY_ROLE: "bootstrap"}


def as_admin(key_id: int = 1) -> dict[str, str]:
    return {KEY_ID: str(key_id), KEY_ROLE: "admin"}


def as_user(key_id: int) -> dict[str, str]:
    return {KEY_ID: str(key_id), KEY_ROLE: "user"}


async def insert_key(
    db: asyncpg.Connection,
    name: str = "someone",
    *,
    email: str = "",
    role: str = "user",
    month_quota: Decimal = Decimal(0),
    month_fee: Decimal = Decimal(0),
    fee_month: dt.date | None = None,
    balance: Decimal = Decimal(0),
    total_fee: Decimal = Decimal(0),
    disabled: bool = False,
) -> int:
    key = generate_key()
    key_id: int = await db.fetchval(
        """
        INSERT INTO api_keys (name, email, role, key_hash, key_prefix, month_quota, month_fee, fee_month,
                              balance, total_fee, disabled)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id
        """,
        name,
        email,
        role,
        hash_key(key),
        display_prefix(key),
        month_quota,
        month_fee,
        fee_month or billing_month("UTC"),
        balance,
        total_fee,
        disabled,
    )
    return key_id


async def insert_session(
    db: asyncpg.Connection, key_id: int, title: str = "a chat", *, total_fee: Decimal = Decimal(0)
) -> int:
    session_id: int = await db.fetchval(
        """
        INSERT INTO sessions (key_id, client_session_id, title, total_in_tokens, total_out_tokens, total_fee)
        VALUES ($1, $2, $3, 10, 20, $4) RETURNING id
        """,
        key_id,
        secrets.token_urlsafe(16),
        title,
        total_fee,
    )
    return session_id


async def insert_thread(
    db: asyncpg.Connection,
    key_id: int,
    *,
    session_id: int | None = None,
    prompt: str = "hello",
    completion: str = "hi there",
    whole_prompt: Any = None,
    fee: Decimal = Decimal("0.00042"),
    created_at: dt.datetime | None = None,
) -> int:
    thread_id: int = await db.fetchval(
        """
        INSERT INTO threads (event_id, key_id, session_id, model, bedrock_model_id, stream, prompt,
                             completion, whole_prompt, tokens_in, tokens_out, price_in, price_out, fee,
                             invocation_latency_ms, first_byte_latency_ms, created_at)
        VALUES ($1, $2, $3, 'claude-3-haiku', 'anthropic.claude-3-haiku-20240307-v1:0', true, $4, $5,
                $6::jsonb, 100, 200, 0.25, 1.25, $7, 321, 45, $8)
        RETURNING id
        """,
        uuid.uuid4(),
        key_id,
        session_id,
        prompt,
        completion,
        None if whole_prompt is None else json.dumps(whole_prompt),
        fee,
        created_at or dt.datetime.now(dt.UTC),
    )
    return thread_id
