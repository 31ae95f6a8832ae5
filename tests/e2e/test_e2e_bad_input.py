"""Bad input on /admin and /user is a 4xx naming the field, and money is exact on the wire.

Through the whole stack (Envoy, authz, the admin API, the translator, the meter, Postgres):
text Postgres cannot store (NUL, a lone surrogate) in any parameter or body field is a 400
naming it, logged on one line with Envoy's request id and no traceback; an amount finer than
1e-9 is refused and writes nothing; `true` is not key 1; money leaves the API with every
stored digit; and a chat prompt holding NUL is answered and billed, as are the calls after it.
"""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal, localcontext
from typing import Any

import httpx
import pytest
from e2e_clients import openai_sdk
from envelopes import error_message
from stack_process import BOOTSTRAP_KEY, Stack

pytestmark = pytest.mark.e2e

NUL = "before\x00after"
JSON = {"content-type": "application/json"}
EXACT = Decimal("5.500001000001100040000000000005")
"""A value the database holds exactly and a float cannot: 5.5000010000011 as a double."""


@pytest.fixture(scope="module", autouse=True)
def first_key(stack: Stack) -> dict[str, Any]:
    """Key 1, created before any test of this module (its database is fresh) can create another."""
    created = stack.create_key("first-key", month_quota=5, balance=5)
    assert created["id"] == 1
    return created


@pytest.fixture(scope="module")
def user_key(stack: Stack, first_key: dict[str, Any]) -> dict[str, Any]:
    return stack.create_key("bad-input-user", month_quota=5, balance=5)


def post_raw(stack: Stack, path: str, raw: str, key: str = BOOTSTRAP_KEY) -> httpx.Response:
    """A body written by hand, to send JSON escapes (\\u0000, \\ud800) exactly as a client may."""
    return stack.admin("POST", path, key, content=raw.encode(), headers=JSON)


def logged_line(stack: Stack, request_id: str, timeout: float = 10.0) -> str:
    """The admin API's log line naming this request id (logs reach the output asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in list(stack.output) if request_id in line]
        if lines or time.monotonic() > deadline:
            assert len(lines) == 1, lines
            return lines[0]
        time.sleep(0.05)


def key_row(stack: Stack, key_id: int) -> Any:
    return stack.sql("SELECT name, email, balance FROM api_keys WHERE id = $1", key_id)[0]


# --- text Postgres cannot store -------------------------------------------------------------

ADMIN_LISTS = [
    "/admin/api-key/list",
    "/admin/payment/list",
    "/admin/session/list",
    "/admin/thread/list",
    "/admin/model/list",
]
USER_LISTS = ["/user/session/list", "/user/thread/list"]


@pytest.mark.parametrize("path", ADMIN_LISTS + USER_LISTS)
def test_nul_in_q_on_every_list_route_is_a_400_logged_once(
    stack: Stack, user_key: dict[str, Any], path: str
) -> None:
    key = user_key["api_key"] if path.startswith("/user") else BOOTSTRAP_KEY
    response = stack.admin("GET", path, key, params={"q": NUL})

    assert error_message(response, 400) == "q: must not contain NUL (U+0000)"
    request_id = response.headers["x-request-id"]
    line = logged_line(stack, request_id)
    assert "refused GET" in line and "400 q: must not contain NUL" in line
    assert key not in line


@pytest.mark.parametrize("field", ["name", "email"])
def test_nul_in_name_or_email_on_apply_creates_nothing(stack: Stack, field: str) -> None:
    before = stack.sql("SELECT count(*) AS n FROM api_keys")[0]["n"]
    body = {"name": "apply-nul", field: NUL}

    response = stack.admin("POST", "/admin/api-key/apply", json=body)

    assert error_message(response, 400) == f"{field}: must not contain NUL (U+0000)"
    assert stack.sql("SELECT count(*) AS n FROM api_keys")[0]["n"] == before


@pytest.mark.parametrize("field", ["name", "email"])
def test_nul_in_name_or_email_on_update_changes_nothing(
    stack: Stack, user_key: dict[str, Any], field: str
) -> None:
    before = key_row(stack, user_key["id"])

    response = stack.admin("POST", "/admin/api-key/update", json={"id": user_key["id"], field: NUL})

    assert error_message(response, 400) == f"{field}: must not contain NUL (U+0000)"
    assert key_row(stack, user_key["id"]) == before


def test_nul_in_a_model_name_on_reset_is_a_400(stack: Stack) -> None:
    response = post_raw(stack, "/admin/model/reset", '{"name": "claude-3-haiku\\u0000"}')

    assert error_message(response, 400) == "name: must not contain NUL (U+0000)"


def test_nul_in_a_model_name_in_the_query_is_a_400(stack: Stack) -> None:
    # In the path (/admin/model/detail/a%00b) Envoy refuses it first, with its own 400.
    response = stack.admin("GET", "/admin/model/detail", params={"name": "claude-3-haiku\x00"})

    assert error_message(response, 400) == "name: must not contain NUL (U+0000)"


def test_a_lone_surrogate_in_a_name_is_a_400_naming_it(stack: Stack) -> None:
    before = stack.sql("SELECT count(*) AS n FROM api_keys")[0]["n"]

    response = post_raw(stack, "/admin/api-key/apply", '{"name": "half \\ud800 a pair"}')

    assert error_message(response, 400) == "name: must not contain a lone surrogate (U+D800)"
    assert stack.sql("SELECT count(*) AS n FROM api_keys")[0]["n"] == before


# --- amounts and integers -------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["5e-30", "0.0000000001", '"5e-30"'])
def test_a_recharge_finer_than_1e_9_is_refused_and_records_no_payment(
    stack: Stack, user_key: dict[str, Any], amount: str
) -> None:
    payments = stack.sql("SELECT count(*) AS n FROM payments")[0]["n"]
    balance = key_row(stack, user_key["id"])["balance"]

    response = post_raw(stack, "/admin/api-key/recharge", f'{{"id": {user_key["id"]}, "balance": {amount}}}')

    message = error_message(response, 400)
    assert message.startswith("balance: has digits below 0.000000001")
    assert stack.sql("SELECT count(*) AS n FROM payments")[0]["n"] == payments
    assert key_row(stack, user_key["id"])["balance"] == balance


def test_a_recharge_at_1e_9_is_recorded_exactly(stack: Stack, user_key: dict[str, Any]) -> None:
    balance = key_row(stack, user_key["id"])["balance"]

    response = post_raw(
        stack, "/admin/api-key/recharge", f'{{"id": {user_key["id"]}, "balance": 0.000000001}}'
    )

    assert response.status_code == 200, response.text
    with localcontext(prec=100):  # the stored balance may hold more digits than Python's default 28
        assert key_row(stack, user_key["id"])["balance"] == balance + Decimal("0.000000001")
    fee = stack.sql("SELECT fee FROM payments WHERE key_id = $1 ORDER BY id DESC LIMIT 1", user_key["id"])
    assert fee[0]["fee"] == Decimal("0.000000001")


@pytest.mark.parametrize("raw_id", ["true", "1.0", '"1"'])
def test_an_id_that_is_not_a_json_integer_does_not_rename_key_1(
    stack: Stack, first_key: dict[str, Any], raw_id: str
) -> None:
    response = post_raw(stack, "/admin/api-key/update", f'{{"id": {raw_id}, "name": "renamed"}}')

    assert error_message(response, 400) == "id: must be an integer"
    assert key_row(stack, 1)["name"] == "first-key"


def test_true_is_not_key_1_on_recharge(stack: Stack, first_key: dict[str, Any]) -> None:
    balance = key_row(stack, 1)["balance"]

    response = post_raw(stack, "/admin/api-key/recharge", '{"id": true, "balance": 1}')

    assert error_message(response, 400) == "id: must be an integer"
    assert key_row(stack, 1)["balance"] == balance


# --- money on the wire ----------------------------------------------------------------------


def exact_json(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return json.loads(response.content, parse_float=Decimal)["data"]


def test_money_leaves_the_api_with_every_stored_digit(stack: Stack) -> None:
    key = stack.create_key("exact-money")
    stack.sql(
        "UPDATE api_keys SET balance = $2, month_quota = $2, total_fee = $2 WHERE id = $1", key["id"], EXACT
    )
    stack.sql("INSERT INTO payments (key_id, fee) VALUES ($1, $2)", key["id"], EXACT)

    detail = stack.admin("GET", f"/admin/api-key/detail/{key['id']}")
    mine = stack.admin("GET", "/user/api-key/mine", key["api_key"])
    payments = stack.admin("GET", "/admin/payment/list", params={"key_id": key["id"]})
    totals = stack.admin("GET", "/admin/statistics/total")

    # The digits as written on the wire, not only the value after a lossless parse.
    assert b'"balance":5.500001000001100040000000000005' in detail.content
    for row in (exact_json(detail), exact_json(mine)):
        assert (row["balance"], row["month_quota"], row["total_fee"]) == (EXACT, EXACT, EXACT)
    assert [item["fee"] for item in exact_json(payments)["items"]] == [EXACT]
    all_fees = stack.sql("SELECT sum(total_fee) AS s FROM api_keys")[0]["s"]
    assert exact_json(totals)["total_fee"] == all_fees
    assert isinstance(json.loads(detail.content)["data"]["balance"], float)  # a JSON number


# --- the meter ------------------------------------------------------------------------------


def test_a_prompt_with_nul_is_answered_and_billed_and_so_are_the_next_calls(
    stack: Stack, user_key: dict[str, Any]
) -> None:
    session = "nul-" + uuid.uuid4().hex
    with openai_sdk(stack, user_key["api_key"]) as sdk:
        answers = [
            sdk.chat.completions.with_raw_response.create(
                model="claude-3-haiku",
                messages=[{"role": "user", "content": prompt}],
                max_tokens=32,
                extra_headers={"Session-Id": session},
            )
            for prompt in ("a prompt with \x00 inside", "the next call", "and the one after")
        ]
    request_ids = [answer.headers["x-request-id"] for answer in answers]
    usage = {rid: answer.parse().usage for rid, answer in zip(request_ids, answers, strict=True)}

    rows = stack.wait_for(
        "SELECT event_id::text AS id, prompt, tokens_in, tokens_out, fee FROM threads"
        " WHERE event_id = ANY($1::uuid[])"
        " AND (SELECT count(*) FROM threads WHERE event_id = ANY($1::uuid[])) = 3",
        request_ids,
        timeout=30,
    )
    billed = {row["id"]: row for row in rows}
    assert set(billed) == set(request_ids)
    first = billed[request_ids[0]]
    assert first["prompt"] == "a prompt with \ufffd inside"
    for rid in request_ids:
        assert usage[rid] is not None
        assert (billed[rid]["tokens_in"], billed[rid]["tokens_out"]) == (
            usage[rid].prompt_tokens,
            usage[rid].completion_tokens,
        )
        assert billed[rid]["fee"] > 0
    title = stack.sql("SELECT title FROM sessions WHERE client_session_id = $1", session)
    assert title[0]["title"] == "a prompt with \ufffd inside"


# --- the log --------------------------------------------------------------------------------


def test_refusals_leave_no_traceback_and_no_key_in_the_log(
    stack: Stack, first_key: dict[str, Any], user_key: dict[str, Any]
) -> None:
    # Runs last in this module: every refusal above has been logged by now.
    response = stack.admin("GET", "/admin/api-key/list", params={"q": NUL})
    logged_line(stack, response.headers["x-request-id"])
    output = "".join(stack.output)

    assert "Traceback" not in output
    assert "internal error" not in output
    for secret in (BOOTSTRAP_KEY, first_key["api_key"], user_key["api_key"]):
        assert secret not in output
