"""/admin/session/* (admin_api/routes/sessions.py); the /user twins are in test_admin_api_user.py."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import httpx
import pytest
from admin_api_support import as_admin, as_user, error_message, insert_key, insert_session, ok_data

SESSION_FIELDS = {
    "id",
    "key",
    "title",
    "key_id",
    "total_in_tokens",
    "total_out_tokens",
    "total_fee",
    "currency",
    "created_at",
    "updated_at",
}


@pytest.fixture(scope="module")
async def world(db: asyncpg.Connection) -> dict[str, int]:
    alice = await insert_key(db, "alice")
    bob = await insert_key(db, "bob")
    ids = {"alice": alice, "bob": bob}
    for name, key_id, title in [
        ("a1", alice, "Trip to Rome"),
        ("a2", alice, "100% sure"),
        ("b1", bob, "rome again"),
        ("b2", bob, "1000 ways"),
        ("a3", alice, "snake_case"),
        ("b3", bob, "snakeXcase"),
    ]:
        ids[name] = await insert_session(db, key_id, title, total_fee=Decimal("0.0125"))
    return ids


async def test_list_all_newest_first(client: httpx.AsyncClient, world: dict[str, int]) -> None:
    data = ok_data(await client.get("/admin/session/list", headers=as_admin()))

    assert data["total"] == 6
    assert [item["id"] for item in data["items"]] == [world[n] for n in ("b3", "a3", "b2", "b1", "a2", "a1")]
    item = data["items"][0]
    assert set(item) == SESSION_FIELDS
    assert (item["key_id"], item["total_in_tokens"], item["total_out_tokens"]) == (world["bob"], 10, 20)
    assert (item["total_fee"], item["currency"]) == (0.0125, "USD")
    assert isinstance(item["key"], str) and item["key"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param({"key_id": "alice"}, ["a3", "a2", "a1"], id="by-key"),
        pytest.param({"q": "ROME"}, ["b1", "a1"], id="title-case-insensitive"),
        pytest.param({"q": "rome", "key_id": "bob"}, ["b1"], id="title-and-key"),
        pytest.param({"q": "100%"}, ["a2"], id="percent-literal"),
        pytest.param({"q": "e_c"}, ["a3"], id="underscore-literal"),
        pytest.param({"q": ""}, ["b3", "a3", "b2", "b1", "a2", "a1"], id="empty-q-is-no-filter"),
    ],
)
async def test_list_filters(
    client: httpx.AsyncClient, world: dict[str, int], query: dict[str, str], expected: list[str]
) -> None:
    params = {k: (str(world[v]) if k == "key_id" else v) for k, v in query.items()}

    data = ok_data(await client.get("/admin/session/list", params=params, headers=as_admin()))

    assert [item["id"] for item in data["items"]] == [world[n] for n in expected]
    assert data["total"] == len(expected)


async def test_list_pages(client: httpx.AsyncClient, world: dict[str, int]) -> None:
    data = ok_data(await client.get("/admin/session/list?limit=2&offset=3", headers=as_admin()))

    assert [item["id"] for item in data["items"]] == [world["b1"], world["a2"]]
    assert (data["total"], data["limit"], data["offset"]) == (6, 2, 3)


@pytest.mark.parametrize(
    "form", ["/admin/session/detail/{id}", "/admin/session/detail?id={id}"], ids=["path", "query"]
)
async def test_detail(client: httpx.AsyncClient, world: dict[str, int], form: str) -> None:
    data = ok_data(await client.get(form.format(id=world["a1"]), headers=as_admin()))

    assert set(data) == SESSION_FIELDS
    assert (data["id"], data["title"], data["key_id"]) == (world["a1"], "Trip to Rome", world["alice"])


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        pytest.param("/admin/session/detail/777777", 404, "session 777777 not found", id="unknown-path"),
        pytest.param("/admin/session/detail?id=777777", 404, "session 777777 not found", id="unknown-query"),
        pytest.param("/admin/session/detail", 400, "id: ", id="missing-id"),
        pytest.param("/admin/session/detail?id=x", 400, "id: ", id="bad-id"),
        pytest.param("/admin/session/detail/-1", 400, "id: ", id="negative-id"),
        pytest.param("/admin/session/list?key_id=x", 400, "key_id: ", id="bad-key-id"),
        pytest.param("/admin/session/list?limit=0", 400, "limit: ", id="limit-zero"),
    ],
)
async def test_refusals(
    client: httpx.AsyncClient, world: dict[str, int], path: str, status: int, message: str
) -> None:
    assert error_message(await client.get(path, headers=as_admin()), status).startswith(message)


@pytest.mark.parametrize(
    "path", ["/admin/session/list", "/admin/session/detail/1", "/admin/session/detail?id=1"]
)
async def test_users_may_not_call(client: httpx.AsyncClient, path: str) -> None:
    error_message(await client.get(path, headers=as_user(1)), 403)
    error_message(await client.get(path), 401)
