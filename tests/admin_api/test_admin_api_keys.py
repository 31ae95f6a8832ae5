"""/admin/api-key/*: apply, update, recharge, list, detail (admin_api/routes/keys.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from admin_api_support import BOOTSTRAP, as_admin, as_user, error_message, insert_key, ok_data

from core.api_keys import display_prefix, hash_key
from core.quota import billing_month

KEY_ROW_FIELDS = {
    "id",
    "name",
    "email",
    "role",
    "group_id",
    "month_quota",
    "month_fee",
    "balance",
    "rate_limit_rpm",
    "total_fee",
    "created_at",
    "updated_at",
    "key_prefix",
    "disabled",
}


async def apply(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    data: dict[str, Any] = ok_data(await client.post("/admin/api-key/apply", json=body, headers=as_admin()))
    return data


# --- apply --------------------------------------------------------------------------------


async def test_apply_shows_the_key_once_and_stores_only_its_hash(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    data = await apply(client, name="Alice", email="alice@example.com")

    key = data["api_key"]
    assert re.fullmatch(r"br-[A-Za-z0-9]{32,}", key)
    assert data == {
        "id": data["id"],
        "name": "Alice",
        "email": "alice@example.com",
        "api_key": key,
        "role": "user",
        "month_quota": 0,
        "balance": 0,
        "rate_limit_rpm": 0,
    }
    row = await db.fetchrow("SELECT * FROM api_keys WHERE id = $1", data["id"])
    assert row["key_hash"] == hash_key(key)
    assert row["key_prefix"] == display_prefix(key)
    assert row["fee_month"] == billing_month("UTC")
    for column, value in dict(row).items():
        rendered = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        assert key not in rendered, f"the plain key is stored in {column}"
        assert key[3:] not in rendered, f"the key's secret part is stored in {column}"


async def test_apply_never_shows_the_key_again(client: httpx.AsyncClient) -> None:
    data = await apply(client, name="Once")
    key = data["api_key"]

    for path in (f"/admin/api-key/detail/{data['id']}", "/admin/api-key/list?limit=1000"):
        response = await client.get(path, headers=as_admin())
        assert response.status_code == 200
        assert key not in response.text
        assert key[3:] not in response.text


async def test_apply_with_money_writes_the_opening_payment(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    data = await apply(client, name="Bob", role="admin", group_id=7, month_quota="12.5", balance=0.1)

    assert (data["role"], data["month_quota"], data["balance"]) == ("admin", 12.5, 0.1)
    row = await db.fetchrow(
        "SELECT role, group_id, month_quota, balance FROM api_keys WHERE id = $1", data["id"]
    )
    # Parsed exactly: the float 0.1 is stored as 0.1, not 0.1000000000000000055…
    assert dict(row) == {
        "role": "admin",
        "group_id": 7,
        "month_quota": Decimal("12.5"),
        "balance": Decimal("0.1"),
    }
    payments = await db.fetch("SELECT fee FROM payments WHERE key_id = $1", data["id"])
    assert [p["fee"] for p in payments] == [Decimal("0.1")]


async def test_apply_without_money_writes_no_payment(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    data = await apply(client, name="Carol", month_quota=5, balance="0")

    assert await db.fetchval("SELECT count(*) FROM payments WHERE key_id = $1", data["id"]) == 0


async def test_apply_treats_null_as_the_default(client: httpx.AsyncClient) -> None:
    data = await apply(
        client, name="Dan", role=None, email=None, group_id=None, month_quota=None, balance=None
    )

    assert (data["role"], data["email"], data["month_quota"], data["balance"]) == ("user", "", 0, 0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({}, "name", id="missing-name"),
        pytest.param({"name": "   "}, "name", id="blank-name"),
        pytest.param({"name": "x", "month_quota": -1}, "month_quota", id="negative-quota"),
        pytest.param({"name": "x", "month_quota": "-0.01"}, "month_quota", id="negative-quota-string"),
        pytest.param({"name": "x", "balance": "abc"}, "balance", id="non-numeric-balance"),
        pytest.param({"name": "x", "balance": "NaN"}, "balance", id="nan-balance"),
        pytest.param({"name": "x", "balance": "Infinity"}, "balance", id="infinite-balance"),
        pytest.param({"name": "x", "balance": True}, "balance", id="bool-balance"),
        pytest.param({"name": "x", "balance": "1e20"}, "balance", id="huge-balance"),
        pytest.param({"name": "x", "balance": ""}, "balance", id="empty-balance"),
        pytest.param({"name": "x", "role": "root"}, "role", id="unknown-role"),
        pytest.param({"name": "x", "group_id": "seven"}, "group_id", id="non-int-group"),
        pytest.param({"name": "x", "group_id": 2**31}, "group_id", id="group-beyond-integer"),
        pytest.param({"name": "x", "rate_limit_rpm": -1}, "rate_limit_rpm", id="negative-rate-limit"),
        pytest.param({"name": "x", "rate_limit_rpm": "fast"}, "rate_limit_rpm", id="non-int-rate-limit"),
    ],
)
async def test_apply_rejects_bad_input_naming_the_field(
    client: httpx.AsyncClient, db: asyncpg.Connection, body: dict[str, Any], field: str
) -> None:
    before = await db.fetchval("SELECT count(*) FROM api_keys")

    response = await client.post("/admin/api-key/apply", json=body, headers=as_admin())

    assert error_message(response, 400).startswith(f"{field}: ")
    assert await db.fetchval("SELECT count(*) FROM api_keys") == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b'{"name": ', "body: malformed JSON", id="malformed-json"),
        pytest.param(b'["name"]', "body: ", id="not-an-object"),
        pytest.param(b"", "body: ", id="no-body"),
        # Python's JSON reader accepts these non-standard literals; they are still not amounts.
        pytest.param(b'{"name": "x", "balance": NaN}', "balance: must be a finite number", id="nan-literal"),
        pytest.param(
            b'{"name": "x", "month_quota": Infinity}', "month_quota: must be a finite", id="inf-literal"
        ),
    ],
)
async def test_apply_rejects_a_broken_body(client: httpx.AsyncClient, content: bytes, message: str) -> None:
    response = await client.post(
        "/admin/api-key/apply",
        content=content,
        headers={**as_admin(), "content-type": "application/json"},
    )

    assert error_message(response, 400).startswith(message)


# --- update -------------------------------------------------------------------------------


async def test_update_changes_only_the_given_fields(client: httpx.AsyncClient) -> None:
    created = await apply(client, name="Erin", email="erin@example.com", month_quota=3)
    before = ok_data(await client.get(f"/admin/api-key/detail/{created['id']}", headers=as_admin()))

    response = await client.post(
        "/admin/api-key/update",
        json={"id": created["id"], "name": "Erin B", "role": "admin", "group_id": 2, "month_quota": "9.75"},
        headers=as_admin(),
    )

    row = ok_data(response)
    assert set(row) == KEY_ROW_FIELDS
    assert (row["name"], row["role"], row["group_id"], row["month_quota"]) == ("Erin B", "admin", 2, 9.75)
    assert row["email"] == "erin@example.com"
    assert row["key_prefix"] == before["key_prefix"]
    assert dt.datetime.fromisoformat(row["updated_at"]) > dt.datetime.fromisoformat(before["updated_at"])


async def test_rate_limit_is_set_on_apply_and_changed_on_update(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    created = await apply(client, name="Rita", rate_limit_rpm=30)
    assert created["rate_limit_rpm"] == 30
    body = {"id": created["id"], "rate_limit_rpm": 0}
    row = ok_data(await client.post("/admin/api-key/update", json=body, headers=as_admin()))
    assert row["rate_limit_rpm"] == 0
    assert await db.fetchval("SELECT rate_limit_rpm FROM api_keys WHERE id = $1", created["id"]) == 0
    unchanged = ok_data(
        await client.post(
            "/admin/api-key/update", json={"id": created["id"], "name": "R"}, headers=as_admin()
        )
    )
    assert unchanged["rate_limit_rpm"] == 0


async def test_update_disables_and_restores_a_key(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    created = await apply(client, name="Frank")

    for disabled in (True, False):
        body = {"id": created["id"], "disabled": disabled}
        row = ok_data(await client.post("/admin/api-key/update", json=body, headers=as_admin()))
        assert row["disabled"] is disabled
        assert await db.fetchval("SELECT disabled FROM api_keys WHERE id = $1", created["id"]) is disabled


async def test_update_does_not_reset_the_month_fee(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    key_id = await insert_key(db, "spender", month_fee=Decimal("4.2"), total_fee=Decimal("10"))

    row = ok_data(
        await client.post("/admin/api-key/update", json={"id": key_id, "email": "s@x"}, headers=as_admin())
    )

    assert (row["month_fee"], row["total_fee"]) == (4.2, 10)


async def test_update_of_an_unknown_key_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/admin/api-key/update", json={"id": 999999, "name": "x"}, headers=as_admin()
    )

    assert error_message(response, 404) == "api key 999999 not found"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"name": "x"}, "id", id="missing-id"),
        pytest.param({"id": "one"}, "id", id="non-int-id"),
        pytest.param({"id": 0}, "id", id="zero-id"),
        pytest.param({"id": 2**64}, "id", id="id-beyond-bigint"),
        pytest.param({"id": 1, "month_quota": -5}, "month_quota", id="negative-quota"),
        pytest.param({"id": 1, "name": ""}, "name", id="empty-name"),
        pytest.param({"id": 1, "role": "bootstrap"}, "role", id="bootstrap-role"),
        pytest.param({"id": 1, "disabled": "maybe"}, "disabled", id="non-bool-disabled"),
    ],
)
async def test_update_rejects_bad_input_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/admin/api-key/update", json=body, headers=as_admin())

    assert error_message(response, 400).startswith(f"{field}: ")


# --- recharge -----------------------------------------------------------------------------


async def payments_of(db: asyncpg.Connection, key_id: int) -> list[Decimal]:
    return [
        r["fee"] for r in await db.fetch("SELECT fee FROM payments WHERE key_id = $1 ORDER BY id", key_id)
    ]


async def test_recharge_by_id(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    created = await apply(client, name="Grace", balance="1.5")

    response = await client.post(
        "/admin/api-key/recharge", json={"id": created["id"], "balance": "2.25"}, headers=as_admin()
    )

    row = ok_data(response)
    assert set(row) == KEY_ROW_FIELDS
    assert row["balance"] == 3.75
    assert await db.fetchval("SELECT balance FROM api_keys WHERE id = $1", created["id"]) == Decimal("3.75")
    assert await payments_of(db, created["id"]) == [Decimal("1.5"), Decimal("2.25")]


async def test_recharge_by_api_key(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    created = await apply(client, name="Heidi")

    response = await client.post(
        "/admin/api-key/recharge", json={"api_key": created["api_key"], "balance": 10}, headers=as_admin()
    )

    assert ok_data(response)["balance"] == 10
    assert await payments_of(db, created["id"]) == [Decimal(10)]


async def test_recharge_with_both_selectors_needs_them_to_agree(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    first = await apply(client, name="Ivan")
    second = await apply(client, name="Judy")

    mismatch = {"id": first["id"], "api_key": second["api_key"], "balance": 1}
    response = await client.post("/admin/api-key/recharge", json=mismatch, headers=as_admin())
    assert error_message(response, 404) == "api key not found"
    match = {"id": first["id"], "api_key": first["api_key"], "balance": 1}
    assert (
        ok_data(await client.post("/admin/api-key/recharge", json=match, headers=as_admin()))["balance"] == 1
    )

    assert await payments_of(db, second["id"]) == []


@pytest.mark.parametrize(
    "selector",
    [
        pytest.param({"id": 987654}, id="unknown-id"),
        pytest.param({"api_key": "br-" + "x" * 40}, id="unknown-key"),
    ],
)
async def test_recharge_of_an_unknown_key_is_404_and_writes_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, selector: dict[str, Any]
) -> None:
    before = await db.fetchval("SELECT count(*) FROM payments")

    response = await client.post(
        "/admin/api-key/recharge", json={**selector, "balance": 5}, headers=as_admin()
    )

    message = error_message(response, 404)
    assert "x" * 40 not in message
    assert await db.fetchval("SELECT count(*) FROM payments") == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"id": 1, "balance": 0}, "balance", id="zero"),
        pytest.param({"id": 1, "balance": "-3"}, "balance", id="negative"),
        pytest.param({"id": 1, "balance": "ten"}, "balance", id="non-numeric"),
        pytest.param({"id": 1}, "balance", id="missing-balance"),
        pytest.param({"balance": 5}, "body", id="no-key-named"),
    ],
)
async def test_recharge_rejects_bad_input_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/admin/api-key/recharge", json=body, headers=as_admin())

    assert error_message(response, 400).startswith(f"{field}: ")


async def test_concurrent_recharges_all_count(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    created = await apply(client, name="Concurrent")

    responses = await asyncio.gather(
        *(
            client.post(
                "/admin/api-key/recharge", json={"id": created["id"], "balance": "0.1"}, headers=as_admin()
            )
            for _ in range(20)
        )
    )

    assert all(r.status_code == 200 for r in responses)
    assert await db.fetchval("SELECT balance FROM api_keys WHERE id = $1", created["id"]) == Decimal("2.0")
    assert len(await payments_of(db, created["id"])) == 20


# --- list and detail ----------------------------------------------------------------------


async def test_list_pages_newest_first(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    ids = [await insert_key(db, f"pager-{n}") for n in range(5)]

    first = ok_data(await client.get("/admin/api-key/list?q=pager-&limit=2", headers=as_admin()))
    second = ok_data(await client.get("/admin/api-key/list?q=pager-&limit=2&offset=2", headers=as_admin()))
    past_the_end = ok_data(await client.get("/admin/api-key/list?q=pager-&offset=10", headers=as_admin()))

    assert (first["total"], first["limit"], first["offset"]) == (5, 2, 0)
    assert [item["id"] for item in first["items"] + second["items"]] == ids[::-1][:4]
    assert all(set(item) == KEY_ROW_FIELDS for item in first["items"])
    assert (second["offset"], past_the_end["items"], past_the_end["total"]) == (2, [], 5)


async def test_list_defaults(client: httpx.AsyncClient) -> None:
    data = ok_data(await client.get("/admin/api-key/list", headers=as_admin()))

    assert (data["limit"], data["offset"]) == (20, 0)
    assert len(data["items"]) == min(data["total"], 20)


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        pytest.param("ZOE", {"Zoe Q", "other"}, id="name-and-email-case-insensitive"),
        pytest.param("100%", {"100% real"}, id="percent-is-literal"),
        pytest.param("a_b", {"a_b"}, id="underscore-is-literal"),
        pytest.param("back\\slash", {"back\\slash"}, id="backslash-is-literal"),
    ],
)
async def test_list_q_matches_substrings_literally(
    client: httpx.AsyncClient, db: asyncpg.Connection, q: str, expected: set[str]
) -> None:
    if not await db.fetchval("SELECT count(*) FROM api_keys WHERE name = 'Zoe Q'"):
        for name, email in [
            ("Zoe Q", ""),
            ("other", "zoe@example.com"),
            ("100% real", ""),
            ("1000 fake", ""),
            ("a_b", ""),
            ("axb", ""),
            ("back\\slash", ""),
            ("backslash", ""),
        ]:
            await insert_key(db, name, email=email)

    data = ok_data(
        await client.get("/admin/api-key/list", params={"q": q, "limit": 1000}, headers=as_admin())
    )

    assert {item["name"] for item in data["items"]} == expected
    assert data["total"] == len(expected)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param("limit=0", "limit", id="limit-zero"),
        pytest.param("limit=1001", "limit", id="limit-too-big"),
        pytest.param("limit=ten", "limit", id="limit-not-int"),
        pytest.param("offset=-1", "offset", id="negative-offset"),
        pytest.param(f"offset={2**63}", "offset", id="offset-beyond-bigint"),
        pytest.param("q=" + "x" * 201, "q", id="q-too-long"),
    ],
)
async def test_list_rejects_bad_paging_naming_the_field(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    response = await client.get(f"/admin/api-key/list?{query}", headers=as_admin())

    assert error_message(response, 400).startswith(f"{field}: ")


async def test_detail(client: httpx.AsyncClient) -> None:
    created = await apply(client, name="Ken", month_quota="1.25")

    row = ok_data(await client.get(f"/admin/api-key/detail/{created['id']}", headers=as_admin()))

    assert set(row) == KEY_ROW_FIELDS
    assert (row["id"], row["name"], row["month_quota"], row["disabled"]) == (
        created["id"],
        "Ken",
        1.25,
        False,
    )
    assert row["key_prefix"] == created["api_key"][:7]
    assert dt.datetime.fromisoformat(row["created_at"]).tzinfo is not None


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/admin/api-key/detail/424242", 404, id="unknown"),
        pytest.param("/admin/api-key/detail/0", 400, id="zero"),
        pytest.param("/admin/api-key/detail/abc", 400, id="not-an-int"),
    ],
)
async def test_detail_refusals(client: httpx.AsyncClient, path: str, status: int) -> None:
    message = error_message(await client.get(path, headers=as_admin()), status)

    assert message == "api key 424242 not found" if status == 404 else message.startswith("id: ")


@pytest.mark.parametrize(
    ("fee_month", "shown"),
    [
        pytest.param(billing_month("UTC"), 4.5, id="this-month"),
        pytest.param(
            (billing_month("UTC") - dt.timedelta(days=1)).replace(day=1), 0, id="last-month-resets-to-zero"
        ),
    ],
)
async def test_month_fee_shown_is_this_months(
    client: httpx.AsyncClient, db: asyncpg.Connection, fee_month: dt.date, shown: float
) -> None:
    key_id = await insert_key(db, "monthly", month_fee=Decimal("4.5"), fee_month=fee_month)

    detail = ok_data(await client.get(f"/admin/api-key/detail/{key_id}", headers=as_admin()))
    listed = ok_data(await client.get("/admin/api-key/list?q=monthly&limit=1000", headers=as_admin()))

    assert detail["month_fee"] == shown
    assert {item["id"]: item["month_fee"] for item in listed["items"]}[key_id] == shown


# --- who may call -------------------------------------------------------------------------

ROUTES = [
    pytest.param("POST", "/admin/api-key/apply", {"name": "intruder"}, id="apply"),
    pytest.param("POST", "/admin/api-key/update", {"id": 1, "role": "admin"}, id="update"),
    pytest.param("POST", "/admin/api-key/recharge", {"id": 1, "balance": 100}, id="recharge"),
    pytest.param("GET", "/admin/api-key/list", None, id="list"),
    pytest.param("GET", "/admin/api-key/detail/1", None, id="detail"),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param(as_user(1), 403, id="user"),
        pytest.param({}, 401, id="no-headers"),
        pytest.param({"x-brproxy-key-id": "1"}, 401, id="no-role"),
        pytest.param({"x-brproxy-key-id": "one", "x-brproxy-key-role": "admin"}, 401, id="bad-id"),
        pytest.param({"x-brproxy-key-id": "1", "x-brproxy-key-role": "Admin"}, 401, id="unknown-role"),
    ],
)
async def test_only_admins_may_call(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    headers: dict[str, str],
    status: int,
) -> None:
    before = await db.fetchval("SELECT (SELECT count(*) FROM api_keys) + (SELECT count(*) FROM payments)")

    response = await client.request(method, path, json=body, headers=headers)

    error_message(response, status)
    after = await db.fetchval("SELECT (SELECT count(*) FROM api_keys) + (SELECT count(*) FROM payments)")
    assert after == before


async def test_the_bootstrap_key_may_create_the_first_admin(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/admin/api-key/apply", json={"name": "root", "role": "admin"}, headers=BOOTSTRAP
    )

    assert ok_data(response)["role"] == "admin"
