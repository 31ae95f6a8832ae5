"""/admin/model/* (admin_api/routes/models.py): the catalogue admins edit, and key allowlists."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest
from admin_api_support import as_admin, as_user, error_message, insert_key, ok_data


@pytest.fixture(autouse=True)
async def clean(db: asyncpg.Connection) -> None:
    await db.execute("TRUNCATE model_overrides, key_model_access")


async def update(client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    return await client.post("/admin/model/update", json=fields, headers=as_admin())


async def test_list_shows_every_builtin_model_with_its_source(client: httpx.AsyncClient) -> None:
    data = ok_data(await client.get("/admin/model/list?limit=1000", headers=as_admin()))
    by_name = {item["name"]: item for item in data["items"]}
    assert data["total"] == len(data["items"]) >= 30
    haiku = by_name["claude-3-haiku"]
    assert haiku["base_id"] == "anthropic.claude-3-haiku-20240307-v1:0"
    assert (haiku["price_input"], haiku["price_output"]) == (0.25, 1.25)
    assert haiku["source"] == "builtin" and haiku["overridden"] is False and haiku["enabled"] is True
    assert "claude-3-haiku-20240307" in haiku["aliases"]
    filtered = ok_data(await client.get("/admin/model/list?q=NOVA", headers=as_admin()))
    assert {i["name"] for i in filtered["items"]} == {"nova-micro", "nova-lite", "nova-pro"}


async def test_update_a_price_then_reset_it(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    edited = ok_data(await update(client, name="nova-pro", price_input="0.75", price_cache_read=0.1))
    assert (edited["price_input"], edited["price_output"], edited["price_cache_read"]) == (0.75, 3.2, 0.1)
    assert edited["overridden"] is True
    row = await db.fetchrow("SELECT * FROM model_overrides WHERE name = 'nova-pro'")
    assert row is not None and str(row["price_input"]) == "0.75" and row["price_output"] is None
    # A later edit keeps the earlier one; null restores the built-in value.
    again = ok_data(await update(client, name="nova-pro", enabled=False, price_cache_read=None))
    assert (again["price_input"], again["price_cache_read"], again["enabled"]) == (0.75, 0.2, False)
    detail = ok_data(await client.get("/admin/model/detail/nova-pro", headers=as_admin()))
    assert detail == again
    assert ok_data(await client.get("/admin/model/detail?name=nova-pro", headers=as_admin())) == again
    reset = ok_data(await client.post("/admin/model/reset", json={"name": "nova-pro"}, headers=as_admin()))
    assert (reset["price_input"], reset["enabled"], reset["overridden"]) == (0.8, True, False)


async def test_add_a_model_and_remove_it(client: httpx.AsyncClient) -> None:
    added = ok_data(
        await update(
            client,
            name="nova-premier",
            base_id="amazon.nova-premier-v1:0",
            provider="amazon",
            price_input="2.5",
            price_output="12.5",
            profiles=["us"],
            profile_only=True,
            capabilities=["tools", "vision"],
            aliases=["amazon-nova-premier"],
        )
    )
    assert added["source"] == "custom" and added["profile_only"] is True and added["kind"] == "chat"
    listed = ok_data(await client.get("/admin/model/list?q=premier", headers=as_admin()))
    assert [i["name"] for i in listed["items"]] == ["nova-premier"]
    removed = ok_data(
        await client.post("/admin/model/reset", json={"name": "nova-premier"}, headers=as_admin())
    )
    assert removed == {"name": "nova-premier", "removed": True}
    assert error_message(await client.get("/admin/model/detail/nova-premier", headers=as_admin()), 404)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"name": "new-model", "price_input": 1}, "needs base_id, provider, price_output",
                     id="incomplete-new-model"),
        pytest.param({"name": "nova-pro", "price_input": -1}, "must not be negative", id="negative-price"),
        pytest.param({"name": "nova-pro", "price_input": "lots"}, "numeric", id="price-not-a-number"),
        pytest.param({"name": "nova-pro", "aliases": ["claude-3-haiku"]}, "listed twice", id="alias-clash"),
        pytest.param({"name": "nova-pro", "capabilities": ["telepathy"]}, "unknown capabilities",
                     id="unknown-capability"),
        pytest.param({"name": "nova-pro", "profiles": ["mars"]}, "unknown profiles", id="unknown-profile"),
        pytest.param({"name": "nova-pro", "kind": "image"}, "kind", id="unknown-kind"),
        pytest.param({"name": "nova-pro", "base_id": "us.amazon.nova-pro-v1:0"}, "without a profile prefix",
                     id="profile-id-as-base-id"),
        pytest.param({"name": "amazon-nova-pro", "price_input": 1}, "alias of nova-pro", id="edit-an-alias"),
        pytest.param({"name": "nova-pro", "unknown_field": 1}, "unknown_field", id="unknown-field"),
    ],
)  # fmt: skip
async def test_invalid_edits_are_400_and_not_stored(
    client: httpx.AsyncClient, db: asyncpg.Connection, fields: dict[str, Any], message: str
) -> None:
    assert message in error_message(await update(client, **fields), 400)
    assert await db.fetchval("SELECT count(*) FROM model_overrides") == 0


async def test_reset_without_changes_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/admin/model/reset", json={"name": "nova-pro"}, headers=as_admin())
    assert "no changes" in error_message(response, 404)


async def test_key_allowlist(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    key_id = await insert_key(db, "limited")
    url = f"/admin/model/access?key_id={key_id}"
    assert ok_data(await client.get(url, headers=as_admin())) == {"key_id": key_id, "models": None}
    body = {
        "key_id": key_id,
        "models": ["claude-3-haiku-20240307", "us.amazon.nova-pro-v1:0", "claude-3-haiku"],
    }
    stored = ok_data(await client.post("/admin/model/access", json=body, headers=as_admin()))
    assert stored == {"key_id": key_id, "models": ["claude-3-haiku", "nova-pro"]}
    assert ok_data(await client.get(url, headers=as_admin()))["models"] == ["claude-3-haiku", "nova-pro"]
    bad = {"key_id": key_id, "models": ["gpt-4o"]}
    assert "unknown model gpt-4o" in error_message(
        await client.post("/admin/model/access", json=bad, headers=as_admin()), 400
    )
    cleared = ok_data(
        await client.post("/admin/model/access", json={"key_id": key_id, "models": None}, headers=as_admin())
    )
    assert cleared["models"] is None
    missing = {"key_id": 999999, "models": None}
    assert error_message(await client.post("/admin/model/access", json=missing, headers=as_admin()), 404)
    assert error_message(await client.get("/admin/model/access?key_id=999999", headers=as_admin()), 404)


async def test_routes_need_an_admin(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    key_id = await insert_key(db, "just-a-user")
    for method, path in [("GET", "/admin/model/list"), ("POST", "/admin/model/update")]:
        response = await client.request(method, path, json={"name": "nova-pro"}, headers=as_user(key_id))
        assert error_message(response, 403)


async def test_changes_are_announced(database_url: str, client: httpx.AsyncClient) -> None:
    listener = await asyncpg.connect(database_url)
    received: list[str] = []
    try:
        await listener.add_listener("brproxy_catalogue_changed", lambda *args: received.append(args[3]))
        ok_data(await update(client, name="nova-lite", enabled=False))
        for _ in range(100):
            if received:
                break
            await listener.execute("SELECT 1")
        assert received == ["model_overrides"]
    finally:
        await listener.close()
