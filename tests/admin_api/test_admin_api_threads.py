"""/admin/thread/* (admin_api/routes/threads.py); the /user twins are in test_admin_api_user.py."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import asyncpg
import httpx
import pytest
from admin_api_support import (
    as_admin,
    as_user,
    error_message,
    insert_key,
    insert_session,
    insert_thread,
    ok_data,
)

LIST_FIELDS = {
    "id",
    "prompt",
    "completion",
    "session_id",
    "key_id",
    "model",
    "tokens_in",
    "tokens_out",
    "fee",
    "created_at",
}

WHOLE_PROMPT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "What is 50% of 10?"}]},
]


@pytest.fixture(scope="module")
async def world(db: asyncpg.Connection) -> dict[str, int]:
    alice = await insert_key(db, "alice")
    bob = await insert_key(db, "bob")
    chat = await insert_session(db, alice, "maths")
    ids = {"alice": alice, "bob": bob, "chat": chat}
    ids["t1"] = await insert_thread(
        db, alice, session_id=chat, prompt="What is 50% of 10?", completion="5", whole_prompt=WHOLE_PROMPT
    )
    ids["t2"] = await insert_thread(db, alice, session_id=chat, prompt="and of 20?", completion="10")
    ids["t3"] = await insert_thread(
        db, bob, prompt="tell me a joke", completion="snake_case walks into a bar"
    )
    ids["t4"] = await insert_thread(
        db, alice, prompt="no session", completion="a JOKE", fee=Decimal("1.000001")
    )
    return ids


async def test_list_all_newest_first(client: httpx.AsyncClient, world: dict[str, int]) -> None:
    data = ok_data(await client.get("/admin/thread/list", headers=as_admin()))

    assert data["total"] == 4
    assert [item["id"] for item in data["items"]] == [world[n] for n in ("t4", "t3", "t2", "t1")]
    item = data["items"][0]
    assert set(item) == LIST_FIELDS
    assert (item["key_id"], item["session_id"], item["model"]) == (world["alice"], None, "claude-3-haiku")
    assert (item["tokens_in"], item["tokens_out"], item["fee"]) == (100, 200, 1.000001)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param({"session_id": "chat"}, ["t2", "t1"], id="by-session"),
        pytest.param({"key_id": "bob"}, ["t3"], id="by-key"),
        pytest.param({"key_id": "alice", "session_id": "chat", "q": "20"}, ["t2"], id="all-filters"),
        pytest.param({"q": "joke"}, ["t4", "t3"], id="prompt-or-completion-case-insensitive"),
        pytest.param({"q": "50%"}, ["t1"], id="percent-literal"),
        pytest.param({"q": "e_c"}, ["t3"], id="underscore-literal"),
        pytest.param({"q": "nowhere"}, [], id="no-match"),
    ],
)
async def test_list_filters(
    client: httpx.AsyncClient, world: dict[str, int], query: dict[str, str], expected: list[str]
) -> None:
    params = {k: (str(world[v]) if k in ("key_id", "session_id") else v) for k, v in query.items()}

    data = ok_data(await client.get("/admin/thread/list", params=params, headers=as_admin()))

    assert [item["id"] for item in data["items"]] == [world[n] for n in expected]
    assert data["total"] == len(expected)


@pytest.mark.parametrize(
    "form", ["/admin/thread/detail/{id}", "/admin/thread/detail?id={id}"], ids=["path", "query"]
)
async def test_detail_shows_every_column(
    client: httpx.AsyncClient, db: asyncpg.Connection, world: dict[str, int], form: str
) -> None:
    data = ok_data(await client.get(form.format(id=world["t1"]), headers=as_admin()))

    columns = {
        r["column_name"]
        for r in await db.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'threads'"
        )
    }
    assert set(data) == columns
    assert data["whole_prompt"] == WHOLE_PROMPT  # JSON, not a string of JSON
    uuid.UUID(data["event_id"])
    assert (data["session_id"], data["key_id"], data["stream"], data["estimated"]) == (
        world["chat"],
        world["alice"],
        True,
        False,
    )
    assert (data["price_in"], data["price_out"], data["fee"]) == (0.25, 1.25, 0.00042)
    assert (data["invocation_latency_ms"], data["first_byte_latency_ms"], data["status"]) == (321, 45, "ok")
    assert (data["cache_read_tokens"], data["end_user"], data["bedrock_model_id"][:10]) == (
        0,
        None,
        "anthropic.",
    )
    assert dt.datetime.fromisoformat(data["recorded_at"]) >= dt.datetime.fromisoformat(data["created_at"])


async def test_detail_without_whole_prompt(client: httpx.AsyncClient, world: dict[str, int]) -> None:
    data = ok_data(await client.get(f"/admin/thread/detail/{world['t3']}", headers=as_admin()))

    assert data["whole_prompt"] is None


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        pytest.param("/admin/thread/detail/888888", 404, "thread 888888 not found", id="unknown-path"),
        pytest.param("/admin/thread/detail?id=888888", 404, "thread 888888 not found", id="unknown-query"),
        pytest.param("/admin/thread/detail", 400, "id: ", id="missing-id"),
        pytest.param(f"/admin/thread/detail/{2**63}", 400, "id: ", id="id-beyond-bigint"),
        pytest.param("/admin/thread/list?session_id=abc", 400, "session_id: ", id="bad-session-id"),
        pytest.param("/admin/thread/list?limit=1001", 400, "limit: ", id="limit-too-big"),
    ],
)
async def test_refusals(
    client: httpx.AsyncClient, world: dict[str, int], path: str, status: int, message: str
) -> None:
    assert error_message(await client.get(path, headers=as_admin()), status).startswith(message)


@pytest.mark.parametrize(
    "path", ["/admin/thread/list", "/admin/thread/detail/1", "/admin/thread/detail?id=1"]
)
async def test_users_may_not_call(client: httpx.AsyncClient, path: str) -> None:
    error_message(await client.get(path, headers=as_user(1)), 403)
    error_message(await client.get(path), 401)
