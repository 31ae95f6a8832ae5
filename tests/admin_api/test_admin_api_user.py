"""/user/* (admin_api/routes/user.py): a key sees its own row, sessions and threads, and nothing else."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import asyncpg
import httpx
import pytest
from admin_api_support import (
    BOOTSTRAP,
    as_admin,
    as_user,
    error_message,
    insert_key,
    insert_session,
    insert_thread,
    ok_data,
)

from core.quota import billing_month


@pytest.fixture(scope="module")
async def world(db: asyncpg.Connection) -> dict[str, int]:
    """Two users and an admin, each with a session holding threads."""
    ids: dict[str, int] = {}
    ids["alice"] = await insert_key(
        db, "alice", month_quota=Decimal(5), month_fee=Decimal("1.5"), balance=Decimal(2)
    )
    ids["bob"] = await insert_key(db, "bob")
    ids["root"] = await insert_key(db, "root", role="admin")
    for owner in ("alice", "bob", "root"):
        session = await insert_session(db, ids[owner], f"{owner}'s chat")
        ids[f"{owner}-session"] = session
        ids[f"{owner}-thread"] = await insert_thread(
            db, ids[owner], session_id=session, prompt=f"{owner} asks"
        )
        ids[f"{owner}-loose"] = await insert_thread(db, ids[owner], prompt=f"{owner} again")
    return ids


async def test_mine_is_the_callers_key(client: httpx.AsyncClient, world: dict[str, int]) -> None:
    row = ok_data(await client.get("/user/api-key/mine", headers=as_user(world["alice"])))

    assert (row["id"], row["name"], row["role"]) == (world["alice"], "alice", "user")
    assert (row["month_quota"], row["month_fee"], row["balance"], row["total_fee"]) == (5, 1.5, 2, 0)
    assert "key_hash" not in row


async def test_mine_shows_this_months_fee_only(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    last_month = (billing_month("UTC") - dt.timedelta(days=1)).replace(day=1)
    key_id = await insert_key(db, "last month's spender", month_fee=Decimal(9), fee_month=last_month)

    assert ok_data(await client.get("/user/api-key/mine", headers=as_user(key_id)))["month_fee"] == 0


async def test_mine_for_an_admin_key(client: httpx.AsyncClient, world: dict[str, int]) -> None:
    row = ok_data(await client.get("/user/api-key/mine", headers=as_admin(world["root"])))

    assert (row["id"], row["role"]) == (world["root"], "admin")


async def test_mine_for_a_deleted_key_is_404(client: httpx.AsyncClient) -> None:
    error_message(await client.get("/user/api-key/mine", headers=as_user(55555)), 404)


@pytest.mark.parametrize("caller", ["alice", "bob", "root"])
async def test_lists_show_only_the_callers_records(
    client: httpx.AsyncClient, world: dict[str, int], caller: str
) -> None:
    headers = as_admin(world[caller]) if caller == "root" else as_user(world[caller])

    sessions = ok_data(await client.get("/user/session/list", headers=headers))
    threads = ok_data(await client.get("/user/thread/list", headers=headers))

    assert [s["id"] for s in sessions["items"]] == [world[f"{caller}-session"]]
    assert [t["id"] for t in threads["items"]] == [world[f"{caller}-loose"], world[f"{caller}-thread"]]
    assert (sessions["total"], threads["total"]) == (1, 2)


async def test_lists_accept_the_callers_own_key_id(client: httpx.AsyncClient, world: dict[str, int]) -> None:
    headers = as_user(world["alice"])

    sessions = ok_data(await client.get(f"/user/session/list?key_id={world['alice']}", headers=headers))
    threads = ok_data(await client.get(f"/user/thread/list?key_id={world['alice']}&q=ASKS", headers=headers))

    assert [s["id"] for s in sessions["items"]] == [world["alice-session"]]
    assert [t["id"] for t in threads["items"]] == [world["alice-thread"]]


@pytest.mark.parametrize("path", ["/user/session/list", "/user/thread/list"])
async def test_lists_refuse_another_key_id(
    client: httpx.AsyncClient, world: dict[str, int], path: str
) -> None:
    response = await client.get(f"{path}?key_id={world['bob']}", headers=as_user(world["alice"]))

    assert error_message(response, 403).startswith("key_id: ")


async def test_thread_list_by_someone_elses_session_is_empty(
    client: httpx.AsyncClient, world: dict[str, int]
) -> None:
    data = ok_data(
        await client.get(
            f"/user/thread/list?session_id={world['bob-session']}", headers=as_user(world["alice"])
        )
    )

    assert (data["items"], data["total"]) == ([], 0)


@pytest.mark.parametrize("kind", ["session", "thread"])
@pytest.mark.parametrize(
    "form", ["/user/{kind}/detail/{id}", "/user/{kind}/detail?id={id}"], ids=["path", "query"]
)
async def test_detail_of_own_record(
    client: httpx.AsyncClient, world: dict[str, int], kind: str, form: str
) -> None:
    path = form.format(kind=kind, id=world[f"alice-{kind}"])

    data = ok_data(await client.get(path, headers=as_user(world["alice"])))

    assert (data["id"], data["key_id"]) == (world[f"alice-{kind}"], world["alice"])


@pytest.mark.parametrize("kind", ["session", "thread"])
@pytest.mark.parametrize(
    "form", ["/user/{kind}/detail/{id}", "/user/{kind}/detail?id={id}"], ids=["path", "query"]
)
async def test_detail_of_someone_elses_record_is_404(
    client: httpx.AsyncClient, world: dict[str, int], kind: str, form: str
) -> None:
    path = form.format(kind=kind, id=world[f"bob-{kind}"])

    # Same answer as for an id that does not exist: ids reveal nothing about other keys.
    assert error_message(await client.get(path, headers=as_user(world["alice"])), 404) == (
        f"{kind} {world[f'bob-{kind}']} not found"
    )
    assert error_message(await client.get(path, headers=as_admin(world["root"])), 404)


USER_ROUTES = [
    "/user/api-key/mine",
    "/user/session/list",
    "/user/session/detail/1",
    "/user/session/detail?id=1",
    "/user/thread/list",
    "/user/thread/detail/1",
    "/user/thread/detail?id=1",
]


@pytest.mark.parametrize("path", USER_ROUTES)
async def test_the_bootstrap_key_is_refused(client: httpx.AsyncClient, path: str) -> None:
    message = error_message(await client.get(path, headers=BOOTSTRAP), 403)

    assert message == "the bootstrap key can only be used on /admin routes"


@pytest.mark.parametrize("path", USER_ROUTES)
async def test_no_caller_is_401(client: httpx.AsyncClient, path: str) -> None:
    error_message(await client.get(path), 401)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        pytest.param("/user/session/list?limit=0", "limit", id="limit-zero"),
        pytest.param("/user/thread/list?offset=-1", "offset", id="negative-offset"),
        pytest.param("/user/thread/list?session_id=x", "session_id", id="bad-session-id"),
        pytest.param("/user/thread/detail?id=", "id", id="empty-id"),
    ],
)
async def test_bad_input_is_400(
    client: httpx.AsyncClient, world: dict[str, int], path: str, field: str
) -> None:
    assert error_message(await client.get(path, headers=as_user(world["alice"])), 400).startswith(
        f"{field}: "
    )
