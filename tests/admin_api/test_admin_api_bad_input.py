"""Bad input is a 4xx naming the field, and money is exact both ways (admin_api/inputs.py).

Every route is reached in-process on a real Postgres, as a caller that skipped nothing (the
edge's headers are set) but sent anything: NUL and lone surrogates in every parameter and
body field, integers that are not JSON integers, amounts finer than 1e-9, broken JSON.
"""

from __future__ import annotations

import json
import logging
import re
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from admin_api_support import as_admin, as_user, error_message, insert_key, insert_session, insert_thread

NUL = "a\x00b"
JSON = {"content-type": "application/json"}
EXACT = Decimal("5.500001000001100040000000000005")


async def post_raw(client: httpx.AsyncClient, path: str, raw: str, **headers: str) -> httpx.Response:
    return await client.post(path, content=raw.encode(), headers={**as_admin(), **JSON, **headers})


def exact_data(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return json.loads(response.content, parse_float=Decimal)["data"]


# --- every route, generically ---------------------------------------------------------------


GET_ROUTES = [
    "/admin/api-key/list",
    "/admin/api-key/detail/{id}",
    "/admin/model/list",
    "/admin/model/detail",
    "/admin/model/detail/{name}",
    "/admin/model/access",
    "/admin/payment/list",
    "/admin/session/list",
    "/admin/session/detail/{id}",
    "/admin/session/detail",
    "/admin/thread/list",
    "/admin/thread/detail/{id}",
    "/admin/thread/detail",
    "/admin/statistics/total",
    "/user/api-key/mine",
    "/user/session/list",
    "/user/session/detail/{id}",
    "/user/session/detail",
    "/user/thread/list",
    "/user/thread/detail/{id}",
    "/user/thread/detail",
]
"""Every GET route but /health (test_admin_api_inputs.py checks that every route is an AdminRoute)."""


async def test_nul_in_any_query_or_path_parameter_of_any_get_route_is_a_400(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    key_id = await insert_key(db, "route-walker")
    for path in GET_ROUTES:
        headers = as_user(key_id) if path.startswith("/user") else as_admin(key_id)
        # Each path parameter holds a NUL; so do q and an unknown parameter.
        concrete = re.sub(r"\{(\w+)\}", "x%00y", path)
        for params in ({"q": NUL}, {"name": NUL}, {"anything": NUL}, {NUL: "1"}):
            response = await client.get(concrete if "{" in path else path, params=params, headers=headers)
            message = error_message(response, 400)
            assert "must not contain NUL (U+0000)" in message, (path, params, message)


async def test_nul_in_a_path_parameter_names_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/admin/model/detail/claude%00haiku", headers=as_admin())

    assert error_message(response, 400) == "name: must not contain NUL (U+0000)"


async def test_nul_in_q_on_the_lists_that_search_postgres_was_a_500(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    key_id = await insert_key(db, "q-searcher")
    for path, headers in [
        ("/admin/api-key/list", as_admin()),
        ("/admin/session/list", as_admin()),
        ("/admin/thread/list", as_admin()),
        ("/user/session/list", as_user(key_id)),
        ("/user/thread/list", as_user(key_id)),
    ]:
        response = await client.get(path, params={"q": NUL}, headers=headers)
        assert error_message(response, 400) == "q: must not contain NUL (U+0000)"


BODY_TEXT = [
    ("/admin/api-key/apply", {}, "name"),
    ("/admin/api-key/apply", {"name": "x"}, "email"),
    ("/admin/api-key/update", {"id": 1}, "name"),
    ("/admin/api-key/update", {"id": 1}, "email"),
    ("/admin/api-key/recharge", {"balance": 1}, "api_key"),
    ("/admin/model/update", {}, "name"),
    ("/admin/model/update", {"name": "claude-3-haiku"}, "provider"),
    ("/admin/model/update", {"name": "claude-3-haiku"}, "kind"),
    (
        "/admin/model/update",
        {"name": "new-model", "provider": "p", "price_input": 1, "price_output": 1},
        "base_id",
    ),
    ("/admin/model/reset", {}, "name"),
]
LIST_TEXT = [
    ("/admin/model/update", {"name": "claude-3-haiku"}, "aliases"),
    ("/admin/model/update", {"name": "claude-3-haiku"}, "profiles"),
    ("/admin/model/update", {"name": "claude-3-haiku"}, "capabilities"),
    ("/admin/model/update", {"name": "claude-3-haiku"}, "betas"),
    ("/admin/model/access", {"key_id": 1}, "models"),
]
UNSTORABLE = [
    pytest.param("\\u0000", "NUL (U+0000)", id="nul"),
    pytest.param("\\ud800", "a lone surrogate (U+D800)", id="lone-high-surrogate"),
    pytest.param("\\udfff", "a lone surrogate (U+DFFF)", id="lone-low-surrogate"),
]


@pytest.mark.parametrize("escape,what", UNSTORABLE)
@pytest.mark.parametrize(("path", "body", "field"), BODY_TEXT + LIST_TEXT)
async def test_unstorable_text_in_any_body_field_is_a_400_that_writes_nothing(
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    path: str,
    body: dict[str, Any],
    field: str,
    escape: str,
    what: str,
) -> None:
    if await db.fetchval("SELECT count(*) FROM api_keys WHERE id = 1") == 0:
        await insert_key(db, "key-one")
    before = await db.fetchval(
        "SELECT (SELECT count(*) FROM api_keys) + (SELECT count(*) FROM payments)"
        " + (SELECT count(*) FROM model_overrides) + (SELECT count(*) FROM key_model_access)"
    )
    text = f'"x{escape}y"'
    value = f"[{text}]" if (path, body, field) in LIST_TEXT else text
    raw = json.dumps(body)[:-1] + (", " if body else "") + f'"{field}": {value}}}'

    response = await post_raw(client, path, raw)

    expected_field = f"{field}.0" if (path, body, field) in LIST_TEXT else field
    assert error_message(response, 400) == f"{expected_field}: must not contain {what}"
    after = await db.fetchval(
        "SELECT (SELECT count(*) FROM api_keys) + (SELECT count(*) FROM payments)"
        " + (SELECT count(*) FROM model_overrides) + (SELECT count(*) FROM key_model_access)"
    )
    assert after == before


async def test_a_surrogate_pair_is_one_character_and_stored(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    response = await post_raw(client, "/admin/api-key/apply", '{"name": "smile \\ud83d\\ude00"}')

    data = exact_data(response)
    assert data["name"] == "smile \U0001f600"
    assert await db.fetchval("SELECT name FROM api_keys WHERE id = $1", data["id"]) == "smile \U0001f600"


# --- JSON: exact numbers, one value per key, JSON only ---------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        pytest.param(
            '{"name": "a", "name": "b"}', 400, "body: the key 'name' appears twice", id="duplicate-key"
        ),
        pytest.param('{"name": ', 400, "body: malformed JSON", id="malformed"),
        pytest.param(
            '{"name": "x", "z": ' + "[" * 100_000 + "]" * 100_000 + "}",
            400,
            "body: nested too deeply",
            id="deep",
        ),
        pytest.param(
            '{"name": "x", "group_id": ' + "9" * 5000 + "}",
            400,
            "body: a number has too many digits",
            id="huge-int",
        ),
    ],
)
async def test_a_broken_json_body_is_a_400_not_a_500(
    client: httpx.AsyncClient, db: asyncpg.Connection, raw: str, status: int, message: str
) -> None:
    before = await db.fetchval("SELECT count(*) FROM api_keys")

    response = await post_raw(client, "/admin/api-key/apply", raw)

    assert error_message(response, status) == message
    assert await db.fetchval("SELECT count(*) FROM api_keys") == before


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_that_is_not_declared_json_is_a_415(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = as_admin() | ({"content-type": content_type} if content_type else {})
    # Without the declaration FastAPI would hand the bytes to pydantic, whose parser rounds numbers.
    response = await client.post(
        "/admin/api-key/apply", content=b'{"name": "x", "balance": 0.1}', headers=headers
    )

    assert error_message(response, 415) == "body: send JSON, with Content-Type: application/json"


async def test_an_amount_keeps_every_digit_a_float_would_lose(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    response = await post_raw(
        client, "/admin/api-key/apply", '{"name": "big", "balance": 123456789012345.123456789}'
    )

    data = exact_data(response)
    assert data["balance"] == Decimal("123456789012345.123456789")
    assert await db.fetchval("SELECT balance FROM api_keys WHERE id = $1", data["id"]) == Decimal(
        "123456789012345.123456789"
    )
    assert await db.fetchval("SELECT fee FROM payments WHERE key_id = $1", data["id"]) == Decimal(
        "123456789012345.123456789"
    )


# --- integers and flags ----------------------------------------------------------------------


@pytest.mark.parametrize("raw_id", ["true", "false", "1.0", "1.5", '"1"', "null", "[1]", "1e0"])
async def test_an_id_that_is_not_a_json_integer_is_refused_and_key_1_is_untouched(
    client: httpx.AsyncClient, db: asyncpg.Connection, raw_id: str
) -> None:
    if await db.fetchval("SELECT count(*) FROM api_keys WHERE id = 1") == 0:
        await insert_key(db, "key-one")
    before = await db.fetchrow("SELECT name, balance FROM api_keys WHERE id = 1")

    update = await post_raw(client, "/admin/api-key/update", f'{{"id": {raw_id}, "name": "renamed"}}')
    recharge = await post_raw(client, "/admin/api-key/recharge", f'{{"id": {raw_id}, "balance": 1}}')
    access = await post_raw(client, "/admin/model/access", f'{{"key_id": {raw_id}, "models": null}}')

    assert error_message(update, 400) == "id: must be an integer"
    # On a recharge the id is optional, so null is no id at all.
    no_id = "body: give api_key or id" if raw_id == "null" else "id: must be an integer"
    assert error_message(recharge, 400) == no_id
    assert error_message(access, 400) == "key_id: must be an integer"
    assert await db.fetchrow("SELECT name, balance FROM api_keys WHERE id = 1") == before


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("group_id", "true"),
        ("group_id", '"3"'),
        ("group_id", "2.0"),
        ("rate_limit_rpm", "1.5"),
        ("rate_limit_rpm", "false"),
    ],
)
async def test_counts_in_a_body_must_be_json_integers(
    client: httpx.AsyncClient, field: str, value: str
) -> None:
    response = await post_raw(client, "/admin/api-key/apply", f'{{"name": "x", "{field}": {value}}}')

    assert error_message(response, 400) == f"{field}: must be an integer"


@pytest.mark.parametrize(("field", "value"), [("disabled", "1"), ("disabled", '"true"'), ("disabled", "0")])
async def test_flags_must_be_json_booleans(
    client: httpx.AsyncClient, db: asyncpg.Connection, field: str, value: str
) -> None:
    key_id = await insert_key(db, "flagged")

    response = await post_raw(client, "/admin/api-key/update", f'{{"id": {key_id}, "{field}": {value}}}')

    assert error_message(response, 400).startswith(f"{field}: ")
    assert await db.fetchval("SELECT disabled FROM api_keys WHERE id = $1", key_id) is False


@pytest.mark.parametrize("value", ["1.0", "+1", " 1", "1_0", "true", "-1", "\u0661", "0x1", "1e0", ""])
async def test_a_query_integer_is_plain_digits(client: httpx.AsyncClient, value: str) -> None:
    for params in ({"key_id": value}, {"limit": value}, {"offset": value}):
        response = await client.get("/admin/thread/list", params=params, headers=as_admin())
        name = next(iter(params))
        assert error_message(response, 400).startswith(f"{name}: "), (params, response.text)
    response = await client.get(f"/admin/api-key/detail/{value}", headers=as_admin())
    assert response.status_code in (400, 404), response.text  # "" is another route: /detail/


@pytest.mark.parametrize(
    ("params", "field"),
    [({"offset": str(2**63)}, "offset"), ({"key_id": "9" * 30}, "key_id"), ({"limit": "1001"}, "limit")],
)
async def test_absurd_query_integers_are_a_400(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await client.get("/admin/session/list", params=params, headers=as_admin())

    assert error_message(response, 400).startswith(f"{field}: ")


# --- money: 1e-9 in, every digit out ---------------------------------------------------------


FINER_THAN_1E_9 = ["5e-30", "0.0000000001", '"1e-10"', '"0.0000000005"', "1.0000000001"]
PRECISION_MESSAGE = "has digits below 0.000000001; amounts are exact to 9 decimal places"


@pytest.mark.parametrize("amount", FINER_THAN_1E_9)
async def test_a_recharge_finer_than_1e_9_is_refused_and_records_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, amount: str
) -> None:
    key_id = await insert_key(db, "recharged", balance=Decimal(2))

    response = await post_raw(client, "/admin/api-key/recharge", f'{{"id": {key_id}, "balance": {amount}}}')

    assert error_message(response, 400) == f"balance: {PRECISION_MESSAGE}"
    assert await db.fetchval("SELECT count(*) FROM payments WHERE key_id = $1", key_id) == 0
    assert await db.fetchval("SELECT balance FROM api_keys WHERE id = $1", key_id) == 2


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/admin/api-key/apply", '{"name": "x", "balance": %s}', "balance"),
        ("/admin/api-key/apply", '{"name": "x", "month_quota": %s}', "month_quota"),
        ("/admin/api-key/update", '{"id": 1, "month_quota": %s}', "month_quota"),
        ("/admin/model/update", '{"name": "claude-3-haiku", "price_input": %s}', "price_input"),
        ("/admin/model/update", '{"name": "claude-3-haiku", "price_cache_write": %s}', "price_cache_write"),
    ],
)
async def test_every_amount_is_exact_to_1e_9(
    client: httpx.AsyncClient, db: asyncpg.Connection, path: str, body: str, field: str
) -> None:
    if await db.fetchval("SELECT count(*) FROM api_keys WHERE id = 1") == 0:
        await insert_key(db, "key-one")
    for amount in FINER_THAN_1E_9:
        response = await post_raw(client, path, body % amount)
        assert error_message(response, 400) == f"{field}: {PRECISION_MESSAGE}", amount
    # Trailing zeros are not finer digits; 1e-9 itself is fine.
    for amount, stored in [("0.1000000000000", Decimal("0.1")), ("0.000000001", Decimal("0.000000001"))]:
        response = await post_raw(client, path, body % amount)
        assert response.status_code == 200, response.text
        assert exact_data(response)[field] == stored


async def test_zero_and_negative_recharges_stay_refused(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    key_id = await insert_key(db, "not-recharged")
    for amount in ("0", "-1", '"0.000000000"', "-0.000000001"):
        response = await post_raw(
            client, "/admin/api-key/recharge", f'{{"id": {key_id}, "balance": {amount}}}'
        )
        assert error_message(response, 400) == "balance: must be greater than 0", amount
    assert await db.fetchval("SELECT count(*) FROM payments WHERE key_id = $1", key_id) == 0


async def test_money_leaves_every_route_with_every_stored_digit(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    key_id = await insert_key(db, "exact", month_quota=EXACT, balance=EXACT, total_fee=EXACT)
    session_id = await insert_session(db, key_id, total_fee=EXACT)
    thread_id = await insert_thread(db, key_id, session_id=session_id, fee=EXACT)
    await db.execute("INSERT INTO payments (key_id, fee) VALUES ($1, $2)", key_id, EXACT)

    detail = await client.get(f"/admin/api-key/detail/{key_id}", headers=as_admin())
    assert b'"balance":5.500001000001100040000000000005,' in detail.content
    key = exact_data(detail)
    assert (key["month_quota"], key["balance"], key["total_fee"]) == (EXACT, EXACT, EXACT)
    mine = exact_data(await client.get("/user/api-key/mine", headers=as_user(key_id)))
    assert mine["balance"] == EXACT
    listed = exact_data(await client.get("/admin/api-key/list", params={"q": "exact"}, headers=as_admin()))
    assert [k["balance"] for k in listed["items"]] == [EXACT]
    payments = exact_data(
        await client.get("/admin/payment/list", params={"key_id": key_id}, headers=as_admin())
    )
    assert [p["fee"] for p in payments["items"]] == [EXACT]
    session = exact_data(await client.get(f"/admin/session/detail/{session_id}", headers=as_admin()))
    assert session["total_fee"] == EXACT
    thread = exact_data(await client.get(f"/user/thread/detail/{thread_id}", headers=as_user(key_id)))
    assert thread["fee"] == EXACT
    totals = exact_data(await client.get("/admin/statistics/total", headers=as_admin()))
    assert totals["total_fee"] == await db.fetchval("SELECT sum(total_fee) FROM api_keys")
    # Prices too (USD per million tokens), from the catalogue as admins set it.
    await db.execute(
        "INSERT INTO model_overrides (name, price_input) VALUES ('claude-3-haiku', $1)"
        " ON CONFLICT (name) DO UPDATE SET price_input = EXCLUDED.price_input",
        EXACT,
    )
    model = await client.get("/admin/model/detail/claude-3-haiku", headers=as_admin())
    assert b'"price_input":5.500001000001100040000000000005,' in model.content
    await db.execute("DELETE FROM model_overrides WHERE name = 'claude-3-haiku'")


# --- the log ---------------------------------------------------------------------------------


async def test_a_refusal_is_one_log_line_with_the_request_id_and_no_traceback(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "br-" + "s3cret" * 6
    with caplog.at_level(logging.INFO, logger="admin_api"):
        response = await post_raw(
            client,
            "/admin/api-key/recharge",
            json.dumps({"api_key": secret + "\x00", "balance": 1}),
            **{"x-request-id": "req-1\nforged line"},
        )

    assert error_message(response, 400) == "api_key: must not contain NUL (U+0000)"
    assert [r.getMessage() for r in caplog.records] == [
        "refused POST /admin/api-key/recharge (request req-1\\nforged line):"
        " 400 api_key: must not contain NUL (U+0000)"
    ]
    assert caplog.records[0].levelno == logging.INFO
    assert caplog.records[0].exc_info is None
    assert secret not in caplog.text


async def test_a_body_that_is_not_utf8_is_said_to_be_so(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/admin/api-key/apply", content=b'{"name": "\xff\xfe"}', headers={**as_admin(), **JSON}
    )
    assert response.status_code == 400
    assert response.json() == {"success": False, "data": "body: not UTF-8 text"}
