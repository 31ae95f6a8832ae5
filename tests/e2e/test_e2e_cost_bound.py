"""No request body spends past a key's money (through Envoy, authz, the translator, the meter).

The bodies that broke the bound when authz read a regex over the body's head are sent as a
hostile key holder sent them: concurrently, on a key with a few cents. Each is now reserved
for what the translator will really ask Bedrock for, so each is refused (429) or served
within the money. A property-based test then fires random mutated bodies of both APIs and
every model family, chunked and not, at keys with tiny balances, and checks the money.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from hostile_bodies import anthropic_bodies, openai_bodies, serialise
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stack_process import Stack

pytestmark = pytest.mark.e2e

LONG = "[[sim: tokens=30000]]"
"""The simulator answers with as many tokens as the call's output ceiling allows."""


def messages(text: str = "write a lot") -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"{text} {LONG}"}]


async def chunks(raw: bytes, size: int = 16384) -> AsyncIterator[bytes]:
    for start in range(0, len(raw), size):
        yield raw[start : start + size]


async def fire(
    stack: Stack, key: str, path: str, bodies: list[bytes], *, chunked: list[bool] | None = None
) -> list[httpx.Response]:
    """Send every body at once (each a request of its own), as a hostile client would."""
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=stack.base_url, verify=stack.verify, timeout=120) as client:

        async def one(index: int, raw: bytes) -> httpx.Response:
            content: Any = chunks(raw) if chunked and chunked[index] else raw
            response = await client.post(path, content=content, headers=headers)
            await response.aread()  # a stream is read to its end
            return response

        return list(await asyncio.gather(*(one(i, raw) for i, raw in enumerate(bodies))))


def spent(stack: Stack, key_id: int) -> Decimal:
    row = stack.sql("SELECT total_fee FROM api_keys WHERE id = $1", key_id)[0]
    return Decimal(row["total_fee"])


def settle(stack: Stack, key_id: int, responses: list[httpx.Response], timeout: float = 30) -> None:
    """Wait until every call the clients were answered has been recorded (or released)."""
    answered = [r.headers["x-request-id"] for r in responses if r.status_code == 200]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = stack.sql("SELECT count(*) AS n FROM threads WHERE event_id = ANY($1::uuid[])", answered)
        if rows[0]["n"] == len(answered):
            break
        time.sleep(0.1)
    time.sleep(0.5)  # a call refused mid-way is recorded too; give the meter a last batch


def around_messages(before: str, after: str = "") -> bytes:
    """A body as a hostile client writes it by hand: `{<before>,"messages":[…]<after>}`."""
    return b"{" + before.encode() + b',"messages":' + orjson.dumps(messages()) + after.encode() + b"}"


CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"
SONNET = '"model":"claude-3-5-sonnet"'
ATTACKS = [
    pytest.param(
        CHAT,
        around_messages(SONNET + ',"stream":true,"max_tokens":1', ',"max_tokens":20000'),
        id="duplicate-max_tokens",
    ),
    pytest.param(
        MESSAGES,
        around_messages(SONNET + ',"stream":true,"max_tokens":1', ',"max_tokens":20000'),
        id="anthropic-duplicate-max_tokens",
    ),
    pytest.param(
        CHAT,
        around_messages(SONNET + ',"max_tokens":1,"max_completion_tokens":20000'),
        id="max_completion_tokens-beside-max_tokens",
    ),
    pytest.param(
        CHAT,
        b"{"
        + SONNET.encode()
        + b',"messages":[{"role":"user","max_tokens":1,"content":"go '
        + LONG.encode()
        + b'"}]}',
        id="max_tokens-inside-a-message",
    ),
    pytest.param(
        CHAT,
        around_messages('"model":"claude-3-haiku","max_tokens":4096', ',"model":"claude-3-opus"'),
        id="cheap-model-first-dear-model-last",
    ),
    pytest.param(
        CHAT, around_messages(SONNET + ',"max_tokens":1', ',"max\\u005ftokens":20000'), id="escaped-key-name"
    ),
    pytest.param(
        CHAT,
        orjson.dumps(
            {"messages": messages("x" * 20_000), "model": "claude-3-5-sonnet", "max_tokens": 20_000}
        ),
        id="fields-after-a-20KB-prompt",
    ),
    pytest.param(
        CHAT,
        orjson.dumps({"model": "claude-sonnet-4-5", "messages": messages(), "reasoning_effort": "high"}),
        id="reasoning_effort-without-max_tokens",
    ),
]


@pytest.mark.parametrize(("path", "raw"), ATTACKS)
def test_crafted_bodies_cannot_spend_past_the_money(stack: Stack, path: str, raw: bytes) -> None:
    # More than a head-of-body reading reserved for each (max_tokens 1, or the flat default of
    # 4,096 tokens when it saw none), far less than the call costs (up to 20,480 tokens).
    money = Decimal("0.10")
    key = stack.create_key(f"attack-{path}-{len(raw)}", balance=str(money))
    responses = asyncio.run(fire(stack, key["api_key"], path, [raw] * 20))
    settle(stack, key["id"], responses)
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, [r.text[:200] for r in responses[:3]]
    # What may be served is what the money covers at the call's real ceiling: never past it.
    assert spent(stack, key["id"]) <= money
    refused = next(r for r in responses if r.status_code == 429)
    body = refused.json()
    if path == "/v1/messages":
        assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    else:
        assert body["error"]["code"] == "insufficient_quota"
    assert "may cost up to $" in refused.text


def test_a_chunked_upload_is_priced_by_its_real_size(stack: Stack) -> None:
    key = stack.create_key("chunked", balance="0.10")
    raw = orjson.dumps({"model": "claude-3-opus", "max_tokens": 10, "messages": messages("w" * 700_000)})
    responses = asyncio.run(
        fire(stack, key["api_key"], "/v1/chat/completions", [raw, raw], chunked=[True, False])
    )
    for response in responses:
        assert response.status_code == 429, response.text[:300]
        # 200,000 tokens (the context window caps a 700 KB prompt) at Opus's $15 per million,
        # and 10 at $75 per million.
        assert "may cost up to $3.000750 " in response.json()["error"]["message"]
    assert spent(stack, key["id"]) == 0


def test_a_reasoning_call_without_max_tokens_is_served_within_its_reservation(stack: Stack) -> None:
    key = stack.create_key("reasoning", balance="1")
    body = orjson.dumps({"model": "claude-sonnet-4-5", "messages": messages(), "reasoning_effort": "high"})
    (response,) = asyncio.run(fire(stack, key["api_key"], "/v1/chat/completions", [body]))
    assert response.status_code == 200, response.text[:300]
    usage = response.json()["usage"]
    # The ceiling the translator sent: the thinking budget plus room for the answer.
    assert usage["completion_tokens"] == 16384 + 4096
    assert response.json()["choices"][0]["finish_reason"] == "length"
    settle(stack, key["id"], [response])
    assert 0 < spent(stack, key["id"]) <= Decimal("1")


def test_honest_calls_are_served_until_the_money_is_spent_never_beyond(stack: Stack) -> None:
    money = Decimal("0.002")
    key = stack.create_key("honest", balance=str(money))
    body = orjson.dumps(
        {"model": "claude-3-haiku", "max_tokens": 200, "messages": messages("hello"), "stream": True}
    )
    served = 0
    for _ in range(4):
        responses = asyncio.run(fire(stack, key["api_key"], "/v1/chat/completions", [body] * 8))
        served += sum(r.status_code == 200 for r in responses)
        assert {r.status_code for r in responses} <= {200, 429}
        settle(stack, key["id"], responses)
    assert served >= 3
    left = stack.sql("SELECT balance FROM api_keys WHERE id = $1", key["id"])[0]["balance"]
    assert spent(stack, key["id"]) <= money and left >= 0


@st.composite
def hostile_batches(draw: st.DrawFn) -> tuple[Decimal, list[tuple[str, bytes, bool]]]:
    money = Decimal(draw(st.sampled_from(["0.0005", "0.002", "0.01", "0.05", "0.2"])))
    calls = []
    for _ in range(draw(st.integers(4, 10))):
        anthropic = draw(st.booleans())
        body = draw(anthropic_bodies() if anthropic else openai_bodies())
        body["messages"][-1] = {"role": "user", "content": f"go {LONG}"}
        if not anthropic and draw(st.booleans()):
            body["stream_options"] = {"include_usage": True}
            body["stream"] = True
        raw = serialise(body, random.Random(draw(st.integers(0, 2**32))))
        calls.append(("/v1/messages" if anthropic else "/v1/chat/completions", raw, draw(st.booleans())))
    return money, calls


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(batch=hostile_batches())
def test_property_no_body_spends_past_the_money(
    stack: Stack, batch: tuple[Decimal, list[tuple[str, bytes, bool]]]
) -> None:
    money, calls = batch
    key = stack.create_key("property", balance=str(money))

    async def all_at_once() -> list[httpx.Response]:
        by_path: dict[str, list[int]] = {}
        for index, (path, _, _) in enumerate(calls):
            by_path.setdefault(path, []).append(index)
        results: list[httpx.Response | None] = [None] * len(calls)
        groups = await asyncio.gather(
            *(
                fire(
                    stack,
                    key["api_key"],
                    path,
                    [calls[i][1] for i in indexes],
                    chunked=[calls[i][2] for i in indexes],
                )
                for path, indexes in by_path.items()
            )
        )
        for (_path, indexes), responses in zip(by_path.items(), groups, strict=True):
            for index, response in zip(indexes, responses, strict=True):
                results[index] = response
        return [r for r in results if r is not None]

    responses = asyncio.run(all_at_once())
    for response in responses:
        assert response.status_code in (200, 400, 404, 429), response.text[:300]
    settle(stack, key["id"], responses)
    assert spent(stack, key["id"]) <= money
    left = stack.sql("SELECT balance FROM api_keys WHERE id = $1", key["id"])[0]["balance"]
    assert left >= 0


def test_a_price_edited_while_a_call_runs_does_not_change_its_fee(stack: Stack) -> None:
    """Priced once: the call is billed at the prices it was admitted and served at, though the
    price changed (and calls made meanwhile were billed at the new one) before it was recorded."""
    key = stack.create_key("price-edit", balance="1")
    body = {
        "model": "claude-3-haiku",
        "max_tokens": 2000,
        "stream": True,
        "messages": [{"role": "user", "content": "slowly [[sim: tokens=1500 tokens_per_second=100]]"}],
    }
    probe = {"model": "claude-3-haiku", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    try:
        with (
            stack.client(key["api_key"]) as client,
            client.stream("POST", "/v1/chat/completions", json=body) as r,
        ):
            request_id = r.headers["x-request-id"]
            lines = r.iter_lines()
            next(line for line in lines if '"content":"' in line)
            update = {"name": "claude-3-haiku", "price_output": 1250}
            assert stack.admin("POST", "/admin/model/update", json=update).status_code == 200
            # The new price is live, for admission and billing, while the first call runs.
            deadline = time.monotonic() + 10
            while True:
                answered = client.post("/v1/chat/completions", json=probe)
                rows = stack.wait_for(
                    "SELECT price_out FROM threads WHERE event_id = $1::uuid",
                    answered.headers["x-request-id"],
                )
                if rows and rows[0]["price_out"] == Decimal("1250"):
                    break
                assert time.monotonic() < deadline, "the new price never took effect"
            assert [line for line in lines if line][-1] == "data: [DONE]"
        thread = stack.wait_for(
            "SELECT price_out, fee, tokens_out FROM threads WHERE event_id = $1::uuid", request_id
        )[0]
    finally:
        assert stack.admin("POST", "/admin/model/reset", json={"name": "claude-3-haiku"}).status_code == 200
    assert thread["price_out"] == Decimal("1.25")  # the admitted price, not the edited 1250
    assert thread["tokens_out"] == 1500
    assert spent(stack, key["id"]) <= Decimal("1")


def _billed_soon(stack: Stack, key: dict[str, Any], within: float = 15) -> None:
    """A plain call made now is billed within `within` seconds: billing is not stuck."""
    with stack.client(key["api_key"]) as client:
        response = client.post(
            "/v1/chat/completions",
            json={
                "model": "claude-3-haiku",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
    assert response.status_code == 200, response.text
    rows = stack.wait_for(
        "SELECT 1 FROM threads WHERE event_id = $1::uuid", response.headers["x-request-id"], timeout=within
    )
    assert rows, "billing stopped: a call answered after it was never recorded"


@pytest.mark.parametrize(("path", "depth"), [(CHAT, 250), (CHAT, 300), (MESSAGES, 251)])
def test_a_body_nested_too_deeply_is_refused_and_billing_goes_on(stack: Stack, path: str, depth: int) -> None:
    """Nesting the JSON reader takes but its writer cannot write again used to stop all billing
    (the usage event could not be shipped) or make a stream free (it could not be recorded)."""
    key = stack.create_key(f"deep-{path}-{depth}", balance="1")
    nested = "[" * depth + "]" * depth
    raw = (
        '{"model":"claude-3-haiku","max_tokens":100,"stream":true,'
        '"messages":[{"role":"user","content":"go [[sim: tokens=50]]","x":' + nested + "}]}"
    ).encode()
    (response,) = asyncio.run(fire(stack, key["api_key"], path, [raw]))
    assert response.status_code == 400, response.text[:300]
    assert "nested too deeply" in response.text
    _billed_soon(stack, key)


def test_huge_media_calls_are_billed_and_do_not_hold_back_billing(stack: Stack) -> None:
    """Events carried every image's base64 (a batch of 90 MB the meter refused, retried for
    ever, holding back every later event): the chat log now keeps a note of each image."""
    key = stack.create_key("huge-media", balance="5")
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(3_700_000)).decode()
    content = [{"type": "text", "text": "look [[sim: tokens=5]]"}]
    content += [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + image}} for _ in range(6)
    ]
    raw = orjson.dumps(
        {"model": "claude-3-haiku", "max_tokens": 10, "messages": [{"role": "user", "content": content}]}
    )
    assert 25 * 2**20 < len(raw) < 32 * 2**20
    responses = asyncio.run(fire(stack, key["api_key"], CHAT, [raw] * 3))
    assert [r.status_code for r in responses] == [200] * 3, responses[0].text[:300]
    ids = [r.headers["x-request-id"] for r in responses]
    deadline = time.monotonic() + 30
    while (
        len(
            rows := stack.sql(
                "SELECT whole_prompt::text AS p FROM threads WHERE event_id = ANY($1::uuid[])", ids
            )
        )
        < 3
    ):
        assert time.monotonic() < deadline, "the calls were never billed"
        time.sleep(0.2)
    assert all(image[:100] not in row["p"] and "bytes, not kept]" in row["p"] for row in rows)
    _billed_soon(stack, key)


def test_an_abandoned_stream_with_images_is_billed_within_its_reservation(stack: Stack) -> None:
    """The estimate of a stream Bedrock never reported used to count each image's base64."""
    money = Decimal("0.05")
    key = stack.create_key("abandoned-images", balance=str(money))
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(3_000_000)).decode()
    content = [{"type": "text", "text": "look [[sim: tokens=400 tokens_per_second=50]]"}]
    content += [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + image}} for _ in range(2)
    ]
    body = {
        "model": "claude-3-haiku",
        "max_tokens": 1000,
        "stream": True,
        "messages": [{"role": "user", "content": content}],
    }
    with stack.client(key["api_key"]) as client, client.stream("POST", CHAT, json=body) as r:
        assert r.status_code == 200
        request_id = r.headers["x-request-id"]
        for line in r.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                break  # the client goes away mid-answer
    thread = stack.wait_for("SELECT tokens_in, estimated FROM threads WHERE event_id = $1::uuid", request_id)[
        0
    ]
    assert thread["estimated"] is True
    assert thread["tokens_in"] < 2 * 10_000  # at most the images' bound, not their 8 MB of base64
    assert spent(stack, key["id"]) <= money
