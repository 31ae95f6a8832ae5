"""/admin/payment/list (admin_api/routes/payments.py)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import asyncpg
import httpx
import pytest
from admin_api_support import as_admin, as_user, error_message, insert_key, ok_data


@pytest.fixture(scope="module")
async def two_keys(db: asyncpg.Connection) -> tuple[int, int]:
    first = await insert_key(db, "payer-1")
    second = await insert_key(db, "payer-2")
    for key_id, fee in [(first, "1.5"), (second, "2"), (first, "3.25"), (first, "0.000001")]:
        await db.execute("INSERT INTO payments (key_id, fee) VALUES ($1, $2)", key_id, Decimal(fee))
    return first, second


async def test_list_all_newest_first(client: httpx.AsyncClient, two_keys: tuple[int, int]) -> None:
    data = ok_data(await client.get("/admin/payment/list", headers=as_admin()))

    assert data["total"] == 4
    assert [item["fee"] for item in data["items"]] == [0.000001, 3.25, 2, 1.5]
    ids = [item["id"] for item in data["items"]]
    assert ids == sorted(ids, reverse=True)
    assert set(data["items"][0]) == {"id", "key_id", "fee", "created_at"}
    assert dt.datetime.fromisoformat(data["items"][0]["created_at"]).tzinfo is not None


async def test_list_filters_by_key_and_pages(client: httpx.AsyncClient, two_keys: tuple[int, int]) -> None:
    first, _ = two_keys

    page_one = ok_data(await client.get(f"/admin/payment/list?key_id={first}&limit=2", headers=as_admin()))
    page_two = ok_data(
        await client.get(f"/admin/payment/list?key_id={first}&limit=2&offset=2", headers=as_admin())
    )

    assert (page_one["total"], page_two["total"]) == (3, 3)
    assert [i["fee"] for i in page_one["items"] + page_two["items"]] == [0.000001, 3.25, 1.5]
    assert {i["key_id"] for i in page_one["items"] + page_two["items"]} == {first}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param("key_id=abc", "key_id", id="key-id-not-int"),
        pytest.param("key_id=0", "key_id", id="key-id-zero"),
        pytest.param("limit=0", "limit", id="limit-zero"),
        pytest.param("offset=-5", "offset", id="negative-offset"),
    ],
)
async def test_list_rejects_bad_input(client: httpx.AsyncClient, query: str, field: str) -> None:
    response = await client.get(f"/admin/payment/list?{query}", headers=as_admin())

    assert error_message(response, 400).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("headers", "status"), [pytest.param(as_user(1), 403, id="user"), pytest.param({}, 401, id="no-headers")]
)
async def test_only_admins_may_list(client: httpx.AsyncClient, headers: dict[str, str], status: int) -> None:
    error_message(await client.get("/admin/payment/list", headers=headers), status)
