"""authz's admission table: who may call which route, and the body a refusal carries."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
import pytest

from authz.decision import Allow, Deny, KeyRecord, decide
from core.api_keys import hash_key

MONTH = dt.date(2025, 6, 1)
LAST_MONTH = dt.date(2025, 5, 1)

USER = "br-" + "u" * 40
ADMIN = "br-" + "a" * 40
DISABLED = "br-" + "d" * 40
BROKE = "br-" + "b" * 40
BROKE_ADMIN = "br-" + "B" * 40
LAST_MONTH_BROKE = "br-" + "l" * 40
HALF_SPENT = "br-" + "h" * 40
BOOTSTRAP = "br-" + "0" * 40
UNKNOWN = "br-" + "x" * 40


def record(
    key_id: int,
    key: str,
    *,
    role: str = "user",
    quota: str = "10",
    fee: str = "0",
    fee_month: dt.date = MONTH,
    balance: str = "0",
    disabled: bool = False,
) -> KeyRecord:
    return KeyRecord(
        id=key_id,
        key_hash=hash_key(key),
        role=role,
        month_quota=Decimal(quota),
        month_fee=Decimal(fee),
        fee_month=fee_month,
        balance=Decimal(balance),
        disabled=disabled,
    )


RECORDS = {
    r.key_hash: r
    for r in (
        record(1, USER),
        record(2, ADMIN, role="admin"),
        record(3, DISABLED, disabled=True),
        record(4, BROKE, fee="10"),
        record(5, BROKE_ADMIN, role="admin", fee="10"),
        record(6, LAST_MONTH_BROKE, fee="10", fee_month=LAST_MONTH),
        record(7, HALF_SPENT, fee="5"),
    )
}


@dataclass(frozen=True)
class Refused:
    status: int
    message: str
    openai_type: str
    openai_code: str | None
    anthropic_type: str


MISSING = Refused(401, "Missing API key", "invalid_request_error", "invalid_api_key", "authentication_error")
INVALID = Refused(401, "Invalid API key.", "invalid_request_error", "invalid_api_key", "authentication_error")
DISABLED_KEY = Refused(401, "disabled", "invalid_request_error", "invalid_api_key", "authentication_error")
BOOTSTRAP_ONLY_ADMIN = Refused(
    403, "only be used on /admin", "permission_error", "permission_denied", "permission_error"
)
NEEDS_ADMIN = Refused(403, "needs an admin key", "permission_error", "permission_denied", "permission_error")
RECHARGE = Refused(429, "Please recharge", "rate_limit_error", "insufficient_quota", "rate_limit_error")


@dataclass(frozen=True)
class Case:
    path: str
    method: str = "POST"
    authorization: str | None = None
    x_api_key: str | None = None
    reserved: dict[int, Decimal] = field(default_factory=dict)
    bootstrap: str | None = BOOTSTRAP


def bearer(key: str) -> str:
    return f"Bearer {key}"


CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"

CASES = [
    # --- credentials ------------------------------------------------------------------------
    pytest.param(Case(CHAT), MISSING, id="missing-key-openai"),
    pytest.param(Case(MESSAGES), MISSING, id="missing-key-anthropic"),
    pytest.param(Case("/admin/api-key/list", "GET"), MISSING, id="missing-key-admin"),
    pytest.param(Case("/user/api-key/mine", "GET"), MISSING, id="missing-key-user"),
    pytest.param(Case(CHAT, authorization="Basic dXNlcjpwYXNz"), MISSING, id="basic-auth-is-no-key"),
    pytest.param(Case(CHAT, authorization="Bearer "), MISSING, id="empty-bearer"),
    pytest.param(Case(CHAT, authorization=bearer(USER)), Allow(1, "user"), id="bearer"),
    pytest.param(
        Case(CHAT, authorization=f"bearer   {USER} "), Allow(1, "user"), id="bearer-lowercase-spaces"
    ),
    pytest.param(Case(MESSAGES, x_api_key=USER), Allow(1, "user"), id="x-api-key"),
    pytest.param(
        Case(MESSAGES, authorization=bearer(USER), x_api_key=USER),
        Allow(1, "user"),
        id="both-headers-same-key",
    ),
    pytest.param(
        Case(CHAT, authorization=bearer(UNKNOWN), x_api_key=USER), INVALID, id="bearer-wins-over-x-api-key"
    ),
    pytest.param(
        Case(CHAT, authorization="Basic abc", x_api_key=USER),
        Allow(1, "user"),
        id="non-bearer-authorization-falls-back-to-x-api-key",
    ),
    pytest.param(Case(CHAT, authorization=bearer(UNKNOWN)), INVALID, id="unknown-key-openai"),
    pytest.param(Case(MESSAGES, x_api_key=UNKNOWN), INVALID, id="unknown-key-anthropic"),
    pytest.param(
        Case("/user/api-key/mine", "GET", authorization=bearer(UNKNOWN)), INVALID, id="unknown-key-user"
    ),
    pytest.param(Case(CHAT, authorization=bearer(DISABLED)), DISABLED_KEY, id="disabled-key-openai"),
    pytest.param(Case(MESSAGES, x_api_key=DISABLED), DISABLED_KEY, id="disabled-key-anthropic"),
    pytest.param(
        Case("/user/api-key/mine", "GET", authorization=bearer(DISABLED)),
        DISABLED_KEY,
        id="disabled-key-user",
    ),
    # --- the bootstrap key: /admin only -------------------------------------------------------
    pytest.param(
        Case("/admin/api-key/apply", authorization=bearer(BOOTSTRAP)),
        Allow(0, "bootstrap"),
        id="bootstrap-on-admin",
    ),
    pytest.param(
        Case("/admin", "GET", authorization=bearer(BOOTSTRAP)),
        Allow(0, "bootstrap"),
        id="bootstrap-on-admin-root",
    ),
    pytest.param(
        Case("/admin/api-key/list?limit=5", "GET", x_api_key=BOOTSTRAP),
        Allow(0, "bootstrap"),
        id="bootstrap-x-api-key-with-query",
    ),
    pytest.param(Case(CHAT, authorization=bearer(BOOTSTRAP)), BOOTSTRAP_ONLY_ADMIN, id="bootstrap-on-v1"),
    pytest.param(Case(MESSAGES, x_api_key=BOOTSTRAP), BOOTSTRAP_ONLY_ADMIN, id="bootstrap-on-messages"),
    pytest.param(
        Case("/v1/models", "GET", authorization=bearer(BOOTSTRAP)),
        BOOTSTRAP_ONLY_ADMIN,
        id="bootstrap-on-models",
    ),
    pytest.param(
        Case("/user/api-key/mine", "GET", authorization=bearer(BOOTSTRAP)),
        BOOTSTRAP_ONLY_ADMIN,
        id="bootstrap-on-user",
    ),
    pytest.param(
        Case("/administrator", "GET", authorization=bearer(BOOTSTRAP)),
        BOOTSTRAP_ONLY_ADMIN,
        id="bootstrap-on-admin-lookalike",
    ),
    pytest.param(
        Case("/admin/api-key/list", "GET", authorization=bearer(BOOTSTRAP), bootstrap=None),
        INVALID,
        id="bootstrap-unset-key-is-unknown",
    ),
    # --- roles ------------------------------------------------------------------------------
    pytest.param(
        Case("/admin/api-key/list", "GET", authorization=bearer(USER)), NEEDS_ADMIN, id="user-on-admin"
    ),
    pytest.param(Case("/admin", "GET", authorization=bearer(USER)), NEEDS_ADMIN, id="user-on-admin-root"),
    pytest.param(
        Case("/admin/api-key/list", "GET", authorization=bearer(ADMIN)),
        Allow(2, "admin"),
        id="admin-on-admin",
    ),
    pytest.param(Case(CHAT, authorization=bearer(ADMIN)), Allow(2, "admin"), id="admin-on-v1"),
    pytest.param(
        Case("/user/api-key/mine", "GET", authorization=bearer(ADMIN)), Allow(2, "admin"), id="admin-on-user"
    ),
    pytest.param(
        Case("/user/api-key/mine", "GET", authorization=bearer(USER)), Allow(1, "user"), id="user-on-user"
    ),
    pytest.param(
        Case("/administrator", "GET", authorization=bearer(USER)),
        Allow(1, "user"),
        id="admin-lookalike-path-is-not-admin",
    ),
    # --- money: only POSTs to paid /v1 operations are refused --------------------------------
    pytest.param(Case(CHAT, authorization=bearer(BROKE)), RECHARGE, id="broke-chat"),
    pytest.param(Case(MESSAGES, x_api_key=BROKE), RECHARGE, id="broke-messages"),
    pytest.param(Case(MESSAGES + "?beta=true", x_api_key=BROKE), RECHARGE, id="broke-messages-with-query"),
    pytest.param(Case("/v1/embeddings", authorization=bearer(BROKE)), RECHARGE, id="broke-embeddings"),
    pytest.param(Case("/v1/models", "GET", authorization=bearer(BROKE)), Allow(4, "user"), id="broke-models"),
    pytest.param(
        Case("/v1/messages/count_tokens", x_api_key=BROKE), Allow(4, "user"), id="broke-count-tokens"
    ),
    pytest.param(
        Case("/v1/messages/count_tokens?beta=true", x_api_key=BROKE),
        Allow(4, "user"),
        id="broke-count-tokens-with-query",
    ),
    pytest.param(Case(CHAT, "GET", authorization=bearer(BROKE)), Allow(4, "user"), id="broke-get-on-v1"),
    pytest.param(
        Case("/user/api-key/mine", "GET", authorization=bearer(BROKE)), Allow(4, "user"), id="broke-user-get"
    ),
    pytest.param(
        Case("/user/session/list", "POST", authorization=bearer(BROKE)),
        Allow(4, "user"),
        id="broke-user-post",
    ),
    pytest.param(
        Case("/admin/api-key/recharge", authorization=bearer(BROKE_ADMIN)),
        Allow(5, "admin"),
        id="broke-admin-can-still-administer",
    ),
    pytest.param(Case(CHAT, authorization=bearer(BROKE_ADMIN)), RECHARGE, id="broke-admin-cannot-chat"),
    pytest.param(
        Case(CHAT, authorization=bearer(LAST_MONTH_BROKE)), Allow(6, "user"), id="last-month-fee-resets"
    ),
    pytest.param(
        Case(CHAT, authorization=bearer(LAST_MONTH_BROKE), reserved={6: Decimal("9.99")}),
        Allow(6, "user"),
        id="last-month-fee-resets-reserved-below-quota",
    ),
    pytest.param(
        Case(CHAT, authorization=bearer(LAST_MONTH_BROKE), reserved={6: Decimal(10)}),
        RECHARGE,
        id="last-month-fee-resets-reserved-fills-quota",
    ),
    pytest.param(Case(CHAT, authorization=bearer(HALF_SPENT)), Allow(7, "user"), id="half-spent"),
    pytest.param(
        Case(CHAT, authorization=bearer(HALF_SPENT), reserved={7: Decimal("4.99")}),
        Allow(7, "user"),
        id="half-spent-reserved-below",
    ),
    pytest.param(
        Case(CHAT, authorization=bearer(HALF_SPENT), reserved={7: Decimal(5)}),
        RECHARGE,
        id="half-spent-reserved-fills-quota",
    ),
    pytest.param(
        Case(CHAT, authorization=bearer(HALF_SPENT), reserved={1: Decimal(5)}),
        Allow(7, "user"),
        id="reserved-of-another-key-ignored",
    ),
    pytest.param(
        Case("/v1/models", "GET", authorization=bearer(HALF_SPENT), reserved={7: Decimal(99)}),
        Allow(7, "user"),
        id="reserved-irrelevant-for-free-calls",
    ),
]


def check_shape(path: str, body: dict[str, Any], refused: Refused) -> None:
    bare = path.split("?", 1)[0]
    if bare.startswith("/v1/messages"):
        assert set(body) == {"type", "error"}
        assert body["type"] == "error"
        assert set(body["error"]) == {"type", "message"}
        assert body["error"]["type"] == refused.anthropic_type
        message = body["error"]["message"]
    elif bare.startswith(("/admin", "/user")):
        assert set(body) == {"success", "data"}
        assert body["success"] is False
        message = body["data"]
    else:
        assert set(body) == {"error"}
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["type"] == refused.openai_type
        assert body["error"]["code"] == refused.openai_code
        assert body["error"]["param"] is None
        message = body["error"]["message"]
    assert isinstance(message, str)
    assert refused.message in message


@pytest.mark.parametrize(("case", "expected"), CASES)
def test_decide(case: Case, expected: Allow | Refused) -> None:
    asked: list[int] = []

    def reserved(key_id: int) -> Decimal:
        asked.append(key_id)
        return case.reserved.get(key_id, Decimal(0))

    decision = decide(
        path=case.path,
        method=case.method,
        authorization=case.authorization,
        x_api_key=case.x_api_key,
        lookup=RECORDS.get,
        bootstrap_hash=hash_key(case.bootstrap) if case.bootstrap else None,
        current_month=MONTH,
        reserved=reserved,
    )
    if isinstance(expected, Allow):
        assert isinstance(decision, Allow), decision
        assert (decision.key_id, decision.role) == (expected.key_id, expected.role)
        return
    assert isinstance(decision, Deny)
    assert decision.status == expected.status
    check_shape(case.path, orjson.loads(decision.body), expected)
    for presented in (case.authorization, case.x_api_key):
        for token in (presented or "").split():
            if token.startswith("br-"):
                assert token.encode() not in decision.body
                assert token[3:10].encode() not in decision.body


def test_reserved_is_asked_only_for_money_spending_calls() -> None:
    asked: list[int] = []

    def reserved(key_id: int) -> Decimal:
        asked.append(key_id)
        return Decimal(0)

    common: dict[str, Any] = {
        "authorization": bearer(HALF_SPENT),
        "x_api_key": None,
        "lookup": RECORDS.get,
        "bootstrap_hash": None,
        "current_month": MONTH,
        "reserved": reserved,
    }
    decide(path="/v1/models", method="GET", **common)
    decide(path="/user/api-key/mine", method="GET", **common)
    assert asked == []
    decide(path=CHAT, method="POST", **common)
    assert asked == [7]


def test_reserved_is_optional() -> None:
    decision = decide(
        path=CHAT,
        method="POST",
        authorization=bearer(BROKE),
        x_api_key=None,
        lookup=RECORDS.get,
        bootstrap_hash=None,
        current_month=MONTH,
    )
    assert isinstance(decision, Deny)
    assert decision.status == 429
    allowed = decide(
        path=CHAT,
        method="POST",
        authorization=bearer(HALF_SPENT),
        x_api_key=None,
        lookup=RECORDS.get,
        bootstrap_hash=None,
        current_month=MONTH,
    )
    assert isinstance(allowed, Allow)
    assert (allowed.key_id, allowed.role) == (7, "user")


def test_lookup_gets_the_sha256_of_the_presented_key() -> None:
    seen: list[bytes] = []

    def lookup(digest: bytes) -> KeyRecord | None:
        seen.append(digest)
        return None

    decide(
        path=CHAT,
        method="POST",
        authorization=bearer(USER),
        x_api_key=None,
        lookup=lookup,
        bootstrap_hash=None,
        current_month=MONTH,
    )
    assert seen == [hash_key(USER)]
