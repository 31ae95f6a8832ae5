"""Recording priced usage in Postgres: idempotent per event, exact money, no lost updates."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from core.api_keys import display_prefix, generate_key, hash_key
from core.usage import UsageEvent
from meter.billing import ThreadRow, price_event
from meter.recorder import record_batch

MONTH = dt.date(2025, 6, 1)
LAST_MONTH = dt.date(2025, 5, 1)
D = Decimal
ZERO = Decimal(0)


@pytest.fixture(scope="module")
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def insert_key(
    db: asyncpg.Connection,
    *,
    quota: Decimal = ZERO,
    month_fee: Decimal = ZERO,
    fee_month: dt.date = MONTH,
    balance: Decimal = ZERO,
) -> int:
    key = generate_key()
    key_id: int = await db.fetchval(
        "INSERT INTO api_keys (name, key_hash, key_prefix, month_quota, month_fee, fee_month, balance)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        "meter-test",
        hash_key(key),
        display_prefix(key),
        quota,
        month_fee,
        fee_month,
        balance,
    )
    return key_id


def row(
    key_id: int,
    *,
    session: str | None = None,
    tokens: tuple[int, int] = (1000, 500),
    prompt: str = "hello",
    fee: Decimal | None = None,
    event_id: str | None = None,
) -> ThreadRow:
    """A claude-3-haiku thread: 1000 in + 500 out costs exactly 0.000875."""
    priced, _ = price_event(
        UsageEvent(
            event_id=event_id or str(uuid.uuid4()),
            key_id=key_id,
            model="claude-3-haiku",
            bedrock_model_id="anthropic.claude-3-haiku-20240307-v1:0",
            occurred_at=1_748_779_200.0,
            input_tokens=tokens[0],
            output_tokens=tokens[1],
            client_session_id=session,
            prompt=prompt,
            completion="answer",
            whole_prompt=[{"role": "user", "content": prompt}],
        )
    )
    return priced if fee is None else dataclasses.replace(priced, fee=fee)


async def key_state(db: asyncpg.Connection, key_id: int) -> dict[str, Any]:
    record = await db.fetchrow(
        "SELECT month_fee, fee_month, balance, total_fee FROM api_keys WHERE id = $1", key_id
    )
    assert record is not None
    return dict(record)


async def sessions_of(db: asyncpg.Connection, key_id: int) -> dict[str, dict[str, Any]]:
    rows = await db.fetch(
        "SELECT client_session_id, title, total_in_tokens, total_out_tokens, total_fee FROM sessions"
        " WHERE key_id = $1",
        key_id,
    )
    return {r["client_session_id"]: dict(r) for r in rows}


async def thread_count(db: asyncpg.Connection, key_id: int) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM threads WHERE key_id = $1", key_id)
    return count


def total(rows: Sequence[ThreadRow]) -> Decimal:
    return sum((r.fee for r in rows), D(0))


async def test_empty_batch_records_nothing(db: asyncpg.Connection) -> None:
    assert await record_batch(db, [], MONTH) == 0


async def test_recording_the_same_batch_twice_bills_once(db: asyncpg.Connection) -> None:
    key_id = await insert_key(db, balance=D(10))
    batch = [
        row(key_id, session="s1", prompt="first   prompt\nof the session"),
        row(key_id, session="s1", tokens=(200, 100)),
        row(key_id, tokens=(1, 1)),
    ]
    fee = total(batch)
    assert fee == D("0.000875") + D("0.000175") + D("0.0000015")
    assert await record_batch(db, batch, MONTH) == 3
    expected_key = {"month_fee": fee, "fee_month": MONTH, "balance": D(10) - fee, "total_fee": fee}
    expected_sessions = {
        "s1": {
            "client_session_id": "s1",
            "title": "first prompt of the session",
            "total_in_tokens": 1200,
            "total_out_tokens": 600,
            "total_fee": D("0.00105"),
        }
    }
    assert await key_state(db, key_id) == expected_key
    assert await sessions_of(db, key_id) == expected_sessions
    assert await thread_count(db, key_id) == 3

    assert await record_batch(db, batch, MONTH) == 0
    assert await record_batch(db, list(reversed(batch)), MONTH) == 0
    assert await key_state(db, key_id) == expected_key
    assert await sessions_of(db, key_id) == expected_sessions
    assert await thread_count(db, key_id) == 3


async def test_a_mixed_batch_bills_only_the_new_events(db: asyncpg.Connection) -> None:
    key_id = await insert_key(db, quota=D(1))
    old = [row(key_id, session="s"), row(key_id, session="s", tokens=(10, 10))]
    assert await record_batch(db, old, MONTH) == 2
    new = [row(key_id, session="s", tokens=(4000, 0)), row(key_id, tokens=(0, 800))]
    assert await record_batch(db, [old[0], new[0], old[1], new[1]], MONTH) == 2
    fee = total(old) + total(new)
    assert await key_state(db, key_id) == {
        "month_fee": fee,
        "fee_month": MONTH,
        "balance": D(0),
        "total_fee": fee,
    }
    session = (await sessions_of(db, key_id))["s"]
    assert (session["total_in_tokens"], session["total_out_tokens"]) == (1000 + 10 + 4000, 500 + 10)
    assert session["total_fee"] == total(old) + new[0].fee
    assert await thread_count(db, key_id) == 4


async def test_an_event_twice_in_one_batch_is_billed_once(db: asyncpg.Connection) -> None:
    key_id = await insert_key(db, balance=D(1))
    one = row(key_id, session="dup")
    assert await record_batch(db, [one, one], MONTH) == 1
    assert (await key_state(db, key_id))["total_fee"] == one.fee
    assert (await sessions_of(db, key_id))["dup"]["total_fee"] == one.fee
    assert await thread_count(db, key_id) == 1


MONEY = [
    pytest.param(D(10), D(0), MONTH, D(5), ["3"], D(3), D(5), id="quota-covers"),
    pytest.param(D(10), D(8), MONTH, D(5), ["3"], D(11), D(4), id="quota-then-balance"),
    pytest.param(D(10), D(10), MONTH, D(5), ["3"], D(13), D(2), id="quota-used-up-all-from-balance"),
    pytest.param(D(10), D(12), MONTH, D(-2), ["3"], D(15), D(-5), id="already-over-quota"),
    pytest.param(D(0), D(0), MONTH, D(1), ["3"], D(3), D(-2), id="balance-goes-negative"),
    pytest.param(D(10), D("9.5"), LAST_MONTH, D(5), ["3"], D(3), D(5), id="last-month-fee-reset"),
    pytest.param(D(2), D(50), LAST_MONTH, D(5), ["3"], D(3), D(4), id="last-month-reset-then-over-quota"),
    pytest.param(
        D(3),
        D(0),
        MONTH,
        D(1),
        ["1.5", "2.25", "0.000001"],
        D("3.750001"),
        D("0.249999"),
        id="several-rows-summed",
    ),
    pytest.param(
        D("0.0000001"),
        D(0),
        MONTH,
        D("0.5"),
        ["0.00000015"],
        D("0.00000015"),
        D("0.49999995"),
        id="tiny-amounts-exact",
    ),
    pytest.param(D(10), D(4), MONTH, D(5), ["0"], D(4), D(5), id="zero-fee-changes-nothing"),
]


@pytest.mark.parametrize(
    ("quota", "month_fee", "fee_month", "balance", "fees", "new_fee", "new_balance"), MONEY
)
async def test_quota_first_then_balance(
    db: asyncpg.Connection,
    quota: Decimal,
    month_fee: Decimal,
    fee_month: dt.date,
    balance: Decimal,
    fees: list[str],
    new_fee: Decimal,
    new_balance: Decimal,
) -> None:
    key_id = await insert_key(db, quota=quota, month_fee=month_fee, fee_month=fee_month, balance=balance)
    rows = [row(key_id, fee=D(f)) for f in fees]
    assert await record_batch(db, rows, MONTH) == len(rows)
    assert await key_state(db, key_id) == {
        "month_fee": new_fee,
        "fee_month": MONTH,
        "balance": new_balance,
        "total_fee": total(rows),
    }


async def test_last_months_fee_is_replaced_by_this_batchs_fee(db: asyncpg.Connection) -> None:
    key_id = await insert_key(db, quota=D(5), month_fee=D("4.99"), fee_month=LAST_MONTH, balance=D(2))
    batch = [row(key_id), row(key_id, tokens=(3, 3))]
    await record_batch(db, batch, MONTH)
    state = await key_state(db, key_id)
    assert state["month_fee"] == total(batch)
    assert state["fee_month"] == MONTH
    assert state["balance"] == D(2)
    # a second batch in the same month accumulates
    more = [row(key_id)]
    await record_batch(db, more, MONTH)
    assert (await key_state(db, key_id))["month_fee"] == total(batch) + total(more)


async def test_events_of_a_missing_key_are_skipped_and_the_rest_recorded(db: asyncpg.Connection) -> None:
    key_id = await insert_key(db, balance=D(1))
    missing = 9_000_000_000
    good = [row(key_id, session="keep"), row(key_id)]
    orphans = [row(missing, session="ghost"), row(missing)]
    assert await record_batch(db, [orphans[0], good[0], orphans[1], good[1]], MONTH) == 2
    assert await thread_count(db, key_id) == 2
    assert await thread_count(db, missing) == 0
    assert await sessions_of(db, missing) == {}
    assert (await key_state(db, key_id))["total_fee"] == total(good)
    assert await record_batch(db, orphans, MONTH) == 0


async def test_sessions_are_per_key_and_client_session_id(db: asyncpg.Connection) -> None:
    alice = await insert_key(db, balance=D(1))
    bob = await insert_key(db, balance=D(1))
    batch = [
        row(alice, session="shared-id", prompt="alice's first"),
        row(bob, session="shared-id", prompt="bob's first", tokens=(10, 20)),
        row(alice, session="shared-id", prompt="alice's second"),
        row(alice, session="other"),
    ]
    await record_batch(db, batch, MONTH)
    await record_batch(db, [row(bob, session="shared-id", prompt="bob's second", tokens=(1, 2))], MONTH)
    alice_sessions = await sessions_of(db, alice)
    bob_sessions = await sessions_of(db, bob)
    assert set(alice_sessions) == {"shared-id", "other"}
    assert set(bob_sessions) == {"shared-id"}
    assert alice_sessions["shared-id"]["title"] == "alice's first"
    assert bob_sessions["shared-id"]["title"] == "bob's first"
    assert (
        alice_sessions["shared-id"]["total_in_tokens"],
        alice_sessions["shared-id"]["total_out_tokens"],
    ) == (
        2000,
        1000,
    )
    assert (bob_sessions["shared-id"]["total_in_tokens"], bob_sessions["shared-id"]["total_out_tokens"]) == (
        11,
        22,
    )
    ids = await db.fetch(
        "SELECT DISTINCT t.session_id, s.key_id FROM threads t JOIN sessions s ON s.id = t.session_id"
        " WHERE t.key_id = ANY($1::bigint[])",
        [alice, bob],
    )
    assert {(r["session_id"], r["key_id"]) for r in ids}.__len__() == 3
    mismatched = await db.fetchval(
        "SELECT count(*) FROM threads t JOIN sessions s ON s.id = t.session_id WHERE t.key_id <> s.key_id"
    )
    assert mismatched == 0


async def test_thread_row_is_stored_as_priced(db: asyncpg.Connection) -> None:
    key_id = await insert_key(db, balance=D(1))
    one = row(key_id, session="stored", prompt="nul\x00inside")
    await record_batch(db, [one], MONTH)
    stored = await db.fetchrow("SELECT * FROM threads WHERE event_id = $1", one.event_id)
    assert stored is not None
    assert stored["prompt"] == "nul\ufffdinside"
    assert (stored["tokens_in"], stored["tokens_out"], stored["fee"]) == (1000, 500, D("0.000875"))
    assert (stored["price_in"], stored["price_out"]) == (D("0.25"), D("1.25"))
    assert stored["created_at"] == one.created_at
    assert stored["model"] == "claude-3-haiku"


async def test_concurrent_writers_lose_no_update(database_url: str, db: asyncpg.Connection) -> None:
    key_id = await insert_key(db, quota=D("0.01"), balance=D(1))
    events = [
        row(key_id, session="s" if i % 2 else None, tokens=(1000 + i, 500 + i), fee=D("0.001") + D(i) / 10**6)
        for i in range(40)
    ]
    # Four writers, overlapping batches: every event is sent by two writers.
    batches = [events[(i * 10) % 40 :][:20] + events[: max(0, (i * 10 + 20) - 40)] for i in range(4)]
    assert sorted(e.event_id for b in batches for e in b) == sorted(
        e.event_id for e in events for _ in range(2)
    )
    connections = [await asyncpg.connect(database_url) for _ in range(4)]
    try:
        inserted = await asyncio.gather(
            *(record_batch(c, b, MONTH) for c, b in zip(connections, batches, strict=True))
        )
    finally:
        for connection in connections:
            await connection.close()
    assert sum(inserted) == 40
    fee = total(events)
    assert await key_state(db, key_id) == {
        "month_fee": fee,
        "fee_month": MONTH,
        "balance": D(1) - (fee - D("0.01")),
        "total_fee": fee,
    }
    session = (await sessions_of(db, key_id))["s"]
    in_session = [e for e in events if e.client_session_id == "s"]
    assert session["total_fee"] == total(in_session)
    assert session["total_in_tokens"] == sum(e.tokens_in for e in in_session)
    assert await thread_count(db, key_id) == 40


async def test_concurrent_distinct_batches_on_one_key(database_url: str, db: asyncpg.Connection) -> None:
    key_id = await insert_key(db, quota=D(0), balance=D(0))
    batches = [[row(key_id, session=f"w{w}", fee=D("0.25")) for _ in range(10)] for w in range(4)]
    connections = [await asyncpg.connect(database_url) for _ in range(4)]
    try:
        for _ in range(3):  # several rounds, so the writers really do collide on the key row
            batches = [[row(key_id, session=f"w{w}", fee=D("0.25")) for _ in range(10)] for w in range(4)]
            await asyncio.gather(
                *(record_batch(c, b, MONTH) for c, b in zip(connections, batches, strict=True))
            )
    finally:
        for connection in connections:
            await connection.close()
    assert await key_state(db, key_id) == {
        "month_fee": D(30),
        "fee_month": MONTH,
        "balance": D(-30),
        "total_fee": D(30),
    }
    assert {s: v["total_fee"] for s, v in (await sessions_of(db, key_id)).items()} == {
        f"w{w}": D("7.5") for w in range(4)
    }


async def test_a_nul_in_the_end_user_does_not_fail_the_batch(db: asyncpg.Connection) -> None:
    key_id = await insert_key(db, balance=D(1))
    good = row(key_id)
    poisoned, _ = price_event(
        UsageEvent(
            event_id=str(uuid.uuid4()),
            key_id=key_id,
            model="claude-3-haiku",
            bedrock_model_id="anthropic.claude-3-haiku-20240307-v1:0",
            occurred_at=1_748_779_200.0,
            input_tokens=1,
            user="end\x00user",
        )
    )
    assert await record_batch(db, [good, poisoned], MONTH) == 2
    stored = await db.fetchval("SELECT end_user FROM threads WHERE event_id = $1", poisoned.event_id)
    assert stored == "end\ufffduser"


async def test_no_client_text_can_fail_the_batch_and_the_fee_stays_exact(db: asyncpg.Connection) -> None:
    # A failed batch is retried forever and holds back every event behind it; whatever text a
    # client (or a caller that skipped the translator) puts in an event, the batch commits.
    key_id = await insert_key(db, balance=D(1))
    good = row(key_id, session="clean")
    odd, _ = price_event(
        UsageEvent(
            event_id=str(uuid.uuid4()),
            key_id=key_id,
            model="claude-3-haiku\x00",
            bedrock_model_id="anthropic.claude-3-haiku-20240307-v1:0",
            occurred_at=1_748_779_200.0,
            input_tokens=1000,
            output_tokens=500,
            client_session_id="s\ud800",
            prompt="half a pair \ud83d here",
            completion="\udfff and NUL \x00",
            whole_prompt=[{"role": "user", "content": "\ud800", "k\udc00": ["\x00"]}],
            user="u\ud800",
            api="openai.chat\x00",
            status="ok",
        )
    )
    assert await record_batch(db, [good, odd], MONTH) == 2
    stored = await db.fetchrow("SELECT * FROM threads WHERE event_id = $1", odd.event_id)
    assert stored is not None
    assert (stored["model"], stored["api"]) == ("claude-3-haiku\ufffd", "openai.chat\ufffd")
    assert stored["prompt"] == "half a pair \ufffd here"
    assert stored["completion"] == "\ufffd and NUL \ufffd"
    assert json.loads(stored["whole_prompt"]) == [
        {"role": "user", "content": "\ufffd", "k\ufffd": ["\ufffd"]}
    ]
    assert stored["end_user"] == "u\ufffd"
    assert (stored["tokens_in"], stored["tokens_out"], stored["fee"]) == (1000, 500, D("0.000875"))
    assert set(await sessions_of(db, key_id)) == {"clean", "s\ufffd"}
    assert (await key_state(db, key_id))["total_fee"] == D("0.000875") * 2
