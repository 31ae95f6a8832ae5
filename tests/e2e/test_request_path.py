"""The whole request path: keys from the bootstrap key, chat through Envoy, metering in Postgres."""

from __future__ import annotations

import itertools
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from stack_process import BOOTSTRAP_KEY

from brproxy.supervisor import SIMULATOR_SECRET_KEY
from core.api_keys import hash_key
from core.catalogue import CATALOGUE
from core.pricing import fee_for

pytestmark = pytest.mark.e2e


_clients: list[openai.OpenAI] = []


def openai_client(stack: Any, key: str) -> openai.OpenAI:
    """The official SDK pointed at the stack (closed at the end of the module)."""
    client = openai.OpenAI(
        base_url=stack.base_url + "/v1",
        api_key=key,
        http_client=httpx.Client(verify=stack.verify, timeout=30),
        max_retries=0,
    )
    _clients.append(client)
    return client


@pytest.fixture(scope="module", autouse=True)
def _close_clients() -> Any:
    yield
    while _clients:
        _clients.pop().close()


@pytest.fixture(scope="module")
def admin_key(stack: Any) -> str:
    """A real admin key, created with the bootstrap key."""
    return str(stack.create_key("ops-admin", role="admin")["api_key"])


@pytest.fixture(scope="module")
def user(stack: Any, admin_key: str) -> dict[str, Any]:
    """A user key with money, created by the admin key."""
    return stack.create_key("alice", month_quota="0.5", balance="10", admin_key=admin_key)


def expected_fee(model: str, prompt_tokens: int, completion_tokens: int) -> Decimal:
    resolved = CATALOGUE.resolve(model)
    assert resolved is not None
    return fee_for(resolved.prices, prompt_tokens, completion_tokens)


def test_health_answers_without_auth(stack: Any) -> None:
    with stack.client() as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["data"]["parts"] == {
        "database": "ok", "authz": "ok", "translator": "ok", "meter": "ok"
    }  # fmt: skip


def test_bootstrap_key_creates_keys_stored_only_as_hashes(
    stack: Any, admin_key: str, user: dict[str, Any]
) -> None:
    for key in (admin_key, user["api_key"]):
        assert key.startswith("br-") and len(key) >= 3 + 32
    assert user["role"] == "user" and Decimal(str(user["balance"])) == Decimal(10)
    rows = stack.sql("SELECT * FROM api_keys WHERE id = $1", user["id"])
    assert rows[0]["key_hash"] == hash_key(user["api_key"])
    row_text = " ".join(str(v) for v in rows[0].values())
    assert user["api_key"] not in row_text
    assert user["api_key"][3:] not in row_text
    listed = stack.admin("GET", "/admin/api-key/list", admin_key).json()["data"]["items"]
    assert all(user["api_key"] not in str(item) for item in listed)


def test_non_stream_chat_is_answered_and_metered(stack: Any, user: dict[str, Any]) -> None:
    client = openai_client(stack, user["api_key"])
    session_id = "sess-" + uuid.uuid4().hex
    completion = client.chat.completions.create(
        model="claude-3-haiku",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there, gateway"},
        ],
        temperature=0,
        extra_headers={"Session-Id": session_id},
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0

    threads = stack.wait_for(
        "SELECT t.*, s.client_session_id FROM threads t JOIN sessions s ON s.id = t.session_id "
        "WHERE s.client_session_id = $1", session_id
    )  # fmt: skip
    assert len(threads) == 1
    thread = threads[0]
    assert thread["key_id"] == user["id"]
    assert thread["tokens_in"] == usage.prompt_tokens
    assert thread["tokens_out"] == usage.completion_tokens
    assert thread["completion"] == completion.choices[0].message.content
    assert thread["prompt"] == "Hello there, gateway"
    assert thread["stream"] is False
    assert thread["bedrock_model_id"] == "anthropic.claude-3-haiku-20240307-v1:0"
    fee = expected_fee("claude-3-haiku", usage.prompt_tokens, usage.completion_tokens)
    assert thread["fee"] == fee
    session = stack.sql("SELECT * FROM sessions WHERE client_session_id = $1", session_id)[0]
    assert (session["total_in_tokens"], session["total_out_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert session["total_fee"] == fee
    assert session["key_id"] == user["id"]
    assert session["title"] == "Hello there, gateway"


def test_stream_chat_arrives_in_chunks_and_is_metered(stack: Any, user: dict[str, Any]) -> None:
    client = openai_client(stack, user["api_key"])
    before = stack.sql("SELECT month_fee, total_fee, balance FROM api_keys WHERE id = $1", user["id"])[0]
    session_id = "sess-" + uuid.uuid4().hex
    stream = client.chat.completions.create(
        model="claude-3-haiku",
        messages=[{"role": "user", "content": "Stream me an answer [[sim:tokens=12]]"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"Session-Id": session_id},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 12
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    assert usage.completion_tokens == 12
    assert len({c.id for c in chunks}) == 1

    thread = stack.wait_for(
        "SELECT t.* FROM threads t JOIN sessions s ON s.id = t.session_id WHERE s.client_session_id = $1",
        session_id,
    )[0]
    assert (thread["tokens_in"], thread["tokens_out"]) == (usage.prompt_tokens, usage.completion_tokens)
    assert thread["completion"] == text
    assert thread["stream"] is True and thread["estimated"] is False
    fee = expected_fee("claude-3-haiku", usage.prompt_tokens, usage.completion_tokens)
    assert thread["fee"] == fee
    after = stack.sql("SELECT month_fee, total_fee, balance FROM api_keys WHERE id = $1", user["id"])[0]
    assert after["total_fee"] - before["total_fee"] == fee
    # The 0.5 monthly quota is far from spent: the balance is untouched.
    assert after["month_fee"] - before["month_fee"] == fee
    assert after["balance"] == before["balance"]


def test_stream_without_include_usage_sends_no_usage_chunk(stack: Any, user: dict[str, Any]) -> None:
    client = openai_client(stack, user["api_key"])
    chunks = list(
        client.chat.completions.create(
            model="claude-3-haiku", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_quota_is_spent_before_balance(stack: Any, admin_key: str) -> None:
    key = stack.create_key("bob", month_quota="0.000001", balance="1", admin_key=admin_key)
    completion = openai_client(stack, key["api_key"]).chat.completions.create(
        model="claude-3-sonnet", messages=[{"role": "user", "content": "Tell me something [[sim:tokens=40]]"}]
    )
    assert completion.usage is not None
    fee = expected_fee("claude-3-sonnet", completion.usage.prompt_tokens, completion.usage.completion_tokens)
    assert fee > Decimal("0.000001")
    row = stack.wait_for("SELECT * FROM api_keys WHERE id = $1 AND total_fee > 0", key["id"])[0]
    assert row["month_fee"] == fee
    assert row["total_fee"] == fee
    assert row["balance"] == Decimal(1) - (fee - Decimal("0.000001"))


def test_key_without_money_is_refused_until_recharged(stack: Any, admin_key: str) -> None:
    key = stack.create_key("carol", month_quota=0, balance=0, admin_key=admin_key)
    client = openai_client(stack, key["api_key"])
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="claude-3-haiku", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 429
    assert refused.value.code == "insufficient_quota"
    assert "recharge" in refused.value.message.lower()

    recharged = stack.admin(
        "POST", "/admin/api-key/recharge", admin_key, json={"id": key["id"], "balance": "2.5"}
    )
    assert recharged.status_code == 200, recharged.text
    assert stack.sql("SELECT fee FROM payments WHERE key_id = $1", key["id"])[0]["fee"] == Decimal("2.5")
    # The change reaches authz within a second.
    deadline = time.monotonic() + 1.0
    while True:
        try:
            client.chat.completions.create(
                model="claude-3-haiku", messages=[{"role": "user", "content": "hi"}]
            )
            break
        except openai.RateLimitError:
            assert time.monotonic() < deadline, "the recharge did not reach authz within 1 s"
            time.sleep(0.05)


def test_disabled_key_is_refused_within_a_second(stack: Any, admin_key: str) -> None:
    key = stack.create_key("dave", month_quota=1, admin_key=admin_key)
    client = openai_client(stack, key["api_key"])
    client.chat.completions.create(model="claude-3-haiku", messages=[{"role": "user", "content": "hi"}])
    changed_at = time.monotonic()
    response = stack.admin(
        "POST", "/admin/api-key/update", admin_key, json={"id": key["id"], "disabled": True}
    )
    assert response.status_code == 200, response.text
    while True:
        try:
            client.chat.completions.create(
                model="claude-3-haiku", messages=[{"role": "user", "content": "hi"}]
            )
        except openai.AuthenticationError:
            break
        assert time.monotonic() - changed_at < 1.0, "the disabled key was still admitted after 1 s"
        time.sleep(0.05)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("br-" + "x" * 40, id="unknown-key"),
        pytest.param("not-even-a-br-key", id="garbage"),
    ],
)
def test_bad_key_gets_401_in_openai_shape(stack: Any, key: str) -> None:
    with pytest.raises(openai.AuthenticationError) as refused:
        openai_client(stack, key).chat.completions.create(
            model="claude-3-haiku", messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.status_code == 401
    body = refused.value.body
    assert isinstance(body, dict) and body["code"] == "invalid_api_key"
    assert key not in str(body)


def test_missing_key_gets_401(stack: Any) -> None:
    with stack.client() as client:
        response = client.post("/v1/chat/completions", json={"model": "claude-3-haiku", "messages": []})
        admin = client.get("/admin/api-key/list")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert admin.status_code == 401 and admin.json()["success"] is False


def test_user_key_on_admin_routes_gets_403_envelope(stack: Any, user: dict[str, Any]) -> None:
    response = stack.admin("GET", "/admin/api-key/list", user["api_key"])
    assert response.status_code == 403
    assert response.json()["success"] is False and isinstance(response.json()["data"], str)


def test_bootstrap_key_cannot_chat_or_use_user_routes(stack: Any) -> None:
    with pytest.raises(openai.PermissionDeniedError):
        openai_client(stack, "bootstrap-admin-key-for-tests-0123456789").chat.completions.create(
            model="claude-3-haiku", messages=[{"role": "user", "content": "hi"}]
        )
    assert stack.admin("GET", "/user/api-key/mine").status_code == 403


def test_forged_identity_headers_are_ignored(stack: Any, admin_key: str, user: dict[str, Any]) -> None:
    admin_id = stack.sql("SELECT id FROM api_keys WHERE role = 'admin' LIMIT 1")[0]["id"]
    forged = {"x-brproxy-key-id": str(admin_id), "x-brproxy-key-role": "admin"}
    with stack.client(user["api_key"], headers=forged) as client:
        assert client.get("/admin/api-key/list").status_code == 403
        mine = client.get("/user/api-key/mine").json()["data"]
        assert mine["id"] == user["id"]
        session_id = "forged-" + uuid.uuid4().hex
        reply = client.post(
            "/v1/chat/completions",
            json={"model": "claude-3-haiku", "messages": [{"role": "user", "content": "who pays?"}]},
            headers={"Session-Id": session_id},
        )
        assert reply.status_code == 200
    thread = stack.wait_for(
        "SELECT t.key_id FROM threads t JOIN sessions s ON s.id = t.session_id"
        " WHERE s.client_session_id = $1",
        session_id,
    )
    assert thread[0]["key_id"] == user["id"]
    # Without any key, forged headers alone get nothing.
    with stack.client(headers=forged) as client:
        assert client.get("/user/api-key/mine").status_code == 401


def test_unknown_model_is_404_not_a_substitute(stack: Any, user: dict[str, Any]) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        openai_client(stack, user["api_key"]).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    assert missing.value.code == "model_not_found"


@pytest.mark.parametrize(
    "model",
    [
        pytest.param("anthropic.claude-3-haiku-20240307-v1:0", id="bedrock-id"),
        pytest.param("us.anthropic.claude-3-5-sonnet-20241022-v2:0", id="inference-profile"),
        pytest.param("claude-3-5-sonnet", id="short-name"),
    ],
)
def test_bedrock_ids_and_short_names_are_accepted(stack: Any, user: dict[str, Any], model: str) -> None:
    completion = openai_client(stack, user["api_key"]).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.model == model
    assert completion.choices[0].message.content


def test_models_lists_short_names(stack: Any, user: dict[str, Any]) -> None:
    models = openai_client(stack, user["api_key"]).models.list()
    ids = {m.id for m in models.data}
    assert {"claude-3-sonnet", "claude-3-haiku", "claude-3-5-sonnet"} <= ids


def test_bad_request_names_the_field(stack: Any, user: dict[str, Any]) -> None:
    with stack.client(user["api_key"]) as client:
        no_messages = client.post("/v1/chat/completions", json={"model": "claude-3-haiku"})
        not_json = client.post(
            "/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
        )
        http_image = client.post(
            "/v1/chat/completions",
            json={
                "model": "claude-3-haiku",
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "http://169.254.169.254/"}}],
                    }
                ],
            },
        )
    assert no_messages.status_code == 400 and no_messages.json()["error"]["param"] == "messages"
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]["message"]
    assert http_image.status_code == 400 and "data:" in http_image.json()["error"]["message"]


def test_stream_is_not_buffered_anywhere(stack: Any, user: dict[str, Any]) -> None:
    """Tokens paced 4 a second by Bedrock reach the client one by one, through Envoy and TLS."""
    client = openai_client(stack, user["api_key"])
    started = time.monotonic()
    arrivals: list[float] = []
    stream = client.chat.completions.create(
        model="claude-3-haiku",
        messages=[{"role": "user", "content": "slowly [[sim:tokens=6 tokens_per_second=4]]"}],
        stream=True,
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 6
    # 6 tokens at 4/s: the first token arrives about a second before the last, and the gaps
    # between tokens are the model's own pacing, not one burst at the end.
    assert arrivals[-1] - arrivals[0] >= 0.9, arrivals
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert sum(gap > 0.15 for gap in gaps) >= 4, arrivals


def test_a_new_key_works_at_once(stack: Any, admin_key: str) -> None:
    """Even before authz hears of it, a key created a moment ago is admitted (looked up once)."""
    for i in range(5):
        key = stack.create_key(f"instant-{i}", month_quota=1, admin_key=admin_key)
        with stack.client(key["api_key"]) as client:
            assert client.get("/user/api-key/mine").status_code == 200


def test_no_secret_reaches_the_logs(stack: Any, admin_key: str, user: dict[str, Any]) -> None:
    """Keys (user, admin, bootstrap) and the simulator's AWS secret never appear in any log line."""
    with stack.client("br-" + "y" * 40) as client:
        client.post("/v1/chat/completions", json={"model": "claude-3-haiku", "messages": []})
    output = "".join(stack.output)
    for secret in (admin_key, user["api_key"], BOOTSTRAP_KEY, SIMULATOR_SECRET_KEY, "y" * 40):
        assert secret not in output
