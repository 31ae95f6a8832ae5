"""Anthropic Messages through Envoy with the official SDK, the way Claude Code calls BRProxy.

(The anthropic SDK 2.x runs on `httpx2`, so its custom clients come from there. It warns about
deprecated models such as Sonnet 4.5, so these tests use Haiku 4.5 and Opus 4.8.)

`/v1/messages` (stream and not, sync and async) and `/v1/messages/count_tokens`, with both
credential headers, betas Bedrock does not take, tools, thinking with signatures, images,
`cache_control`, Anthropic's exact event sequence and error shapes, and the threads the
meter wrote.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest
from e2e_clients import session_thread
from stack_process import Stack

from core.catalogue import CATALOGUE

pytestmark = pytest.mark.e2e

HAIKU_45 = "claude-haiku-4-5-20251001"  # what Claude Code sends for background tasks
SONNET_37 = "claude-3-7-sonnet-latest"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n a tiny fake png").decode()
WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
# Claude Code's usual betas: only interleaved-thinking reaches Bedrock, which refuses the
# others ("invalid beta flag", as the simulator does).
CLAUDE_CODE_BETAS = ",".join(
    [
        "claude-code-20250219",
        "interleaved-thinking-2025-05-14",
        "oauth-2025-04-20",
        "fine-grained-tool-streaming-2025-05-14",
    ]
)


@pytest.fixture(scope="module")
def key(stack: Stack) -> dict[str, Any]:
    return stack.create_key("claude-code-user", month_quota="5", balance="5")


@pytest.fixture(scope="module")
def client(stack: Stack, key: dict[str, Any]) -> Iterator[anthropic.Anthropic]:
    """Claude Code's setup: ANTHROPIC_BASE_URL = the gateway root, the key as a Bearer token."""
    with anthropic.Anthropic(
        base_url=stack.base_url,
        auth_token=key["api_key"],
        http_client=httpx2.Client(verify=stack.verify, timeout=30),
        max_retries=0,
        default_headers={"anthropic-beta": CLAUDE_CODE_BETAS},
    ) as sdk:
        yield sdk


def claude_code_session() -> tuple[str, dict[str, str]]:
    value = str(uuid.uuid4())
    return value, {"x-claude-code-session-id": value}


def test_message_is_answered_and_metered_per_claude_code_session(
    stack: Stack, client: anthropic.Anthropic
) -> None:
    session, headers = claude_code_session()
    message = client.messages.create(
        model=HAIKU_45,
        max_tokens=100,
        system=[{"type": "text", "text": "You are Claude Code."}],
        messages=[{"role": "user", "content": "Hello gateway [[sim: tokens=7]]"}],
        extra_headers=headers,
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.model == HAIKU_45
    assert message.content[0].type == "text" and message.content[0].text.startswith(
        "Simulated answer to: Hello"
    )
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 7
    row = session_thread(stack, session)
    assert row["api"] == "anthropic.messages"
    assert row["bedrock_model_id"] == "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    assert (row["tokens_in"], row["tokens_out"]) == (message.usage.input_tokens, 7)
    assert row["completion"] == message.content[0].text and row["prompt"].startswith("Hello gateway")
    assert row["fee"] > 0


def test_x_api_key_and_query_string_work_too(stack: Stack, key: dict[str, Any]) -> None:
    with stack.client() as http:
        response = http.post(
            "/v1/messages?beta=true",
            headers={"x-api-key": key["api_key"], "anthropic-version": "2023-06-01"},
            json={
                "model": "claude-haiku-4-5",
                "max_tokens": 20,
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "claude-haiku-4-5"


def test_stream_has_anthropics_exact_event_sequence(stack: Stack, key: dict[str, Any]) -> None:
    body = {
        "model": HAIKU_45,
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "stream [[sim: tokens=3]]"}],
    }
    headers = {"authorization": f"Bearer {key['api_key']}", "anthropic-beta": CLAUDE_CODE_BETAS}
    with stack.client() as http, http.stream("POST", "/v1/messages", json=body, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        raw = response.read().decode()
    frames = [f for f in raw.split("\n\n") if f.strip()]
    events = []
    for frame in frames:
        event_line, data_line = frame.split("\n")
        event = json.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {event['type']}"
        events.append(event)
    assert [e["type"] for e in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0]["message"]["model"] == HAIKU_45
    assert events[-2]["delta"]["stop_reason"] == "end_turn" and events[-2]["usage"]["output_tokens"] == 3
    assert events[-1] == {"type": "message_stop"}  # Bedrock's invocation metrics are not passed on


def test_stream_helper_with_tools(stack: Stack, client: anthropic.Anthropic) -> None:
    session, headers = claude_code_session()
    with client.messages.stream(
        model=HAIKU_45,
        max_tokens=200,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Paris? [[sim: tool=get_weather tokens=2]]"}],
        extra_headers=headers,
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    tool_use = final.content[1]
    assert tool_use.type == "tool_use" and tool_use.input == {"city": "city-1"}
    assert final.stop_reason == "tool_use"
    answer = client.messages.create(
        model=HAIKU_45,
        max_tokens=200,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "Paris? [[sim: tool=get_weather tokens=2]]"},
            {"role": "assistant", "content": [b.model_dump() for b in final.content]},  # type: ignore[misc]
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "18C"}],
            },
        ],
    )
    assert answer.stop_reason == "end_turn"
    assert session_thread(stack, session)["tokens_out"] == final.usage.output_tokens


def test_thinking_with_signatures_round_trips(client: anthropic.Anthropic) -> None:
    thinking = {"type": "enabled", "budget_tokens": 1024}
    prompt = {"role": "user", "content": "Weather? [[sim: tool=get_weather redacted]]"}
    with client.messages.stream(
        model=SONNET_37,
        max_tokens=4000,
        thinking=thinking,
        tools=[WEATHER],
        messages=[prompt],  # type: ignore[arg-type,list-item]
    ) as stream:
        first = stream.get_final_message()
    assert [b.type for b in first.content] == ["redacted_thinking", "thinking", "tool_use"]
    assert first.content[1].signature  # type: ignore[union-attr]
    history: list[Any] = [
        prompt,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": first.content[2].id, "content": "18C"}],
        },  # type: ignore[union-attr]
    ]
    second = client.messages.create(
        model=SONNET_37,
        max_tokens=4000,
        thinking=thinking,
        tools=[WEATHER],
        messages=history,  # type: ignore[arg-type,list-item]
    )
    assert second.stop_reason == "end_turn"
    history[1]["content"][1]["signature"] = "forged"
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model=SONNET_37, max_tokens=4000, thinking=thinking, tools=[WEATHER], messages=history
        )  # type: ignore[arg-type,list-item]
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "signature" in refused.value.message


def test_images_and_cache_control(stack: Stack, client: anthropic.Anthropic) -> None:
    system = [
        {"type": "text", "text": f"{uuid.uuid4()} " + "rules " * 300, "cache_control": {"type": "ephemeral"}}
    ]
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "what is this?"},
    ]
    first = client.messages.create(
        model=HAIKU_45, max_tokens=50, system=system, messages=[{"role": "user", "content": content}]
    )  # type: ignore[arg-type,misc]
    second = client.messages.create(
        model=HAIKU_45, max_tokens=50, system=system, messages=[{"role": "user", "content": content}]
    )  # type: ignore[arg-type,misc]
    assert first.usage.cache_creation_input_tokens and first.usage.cache_creation_input_tokens > 400
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.input_tokens == first.usage.input_tokens >= 256  # the image counts
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model=HAIKU_45,
            max_tokens=50,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "url", "url": "http://169.254.169.254/"}}
                    ],
                }
            ],  # type: ignore[list-item]
        )
    assert "base64" in refused.value.message


def test_count_tokens_matches_the_call(client: anthropic.Anthropic) -> None:
    messages: list[Any] = [{"role": "user", "content": "count these words please"}]
    counted = client.messages.count_tokens(model=HAIKU_45, messages=messages, system="Be brief.")
    answered = client.messages.create(model=HAIKU_45, max_tokens=20, messages=messages, system="Be brief.")
    assert counted.input_tokens == answered.usage.input_tokens


@pytest.mark.parametrize(
    ("error", "exception", "status", "error_type"),
    [
        pytest.param(
            "ValidationException", anthropic.BadRequestError, 400, "invalid_request_error", id="validation"
        ),
        pytest.param(
            "AccessDeniedException", anthropic.PermissionDeniedError, 403, "permission_error", id="denied"
        ),
        pytest.param(
            "ResourceNotFoundException", anthropic.NotFoundError, 404, "not_found_error", id="not-found"
        ),
        pytest.param(
            "ThrottlingException", anthropic.RateLimitError, 429, "rate_limit_error", id="throttling"
        ),
        pytest.param(
            "ServiceUnavailableException", anthropic.InternalServerError, 503, "overloaded_error", id="503"
        ),
        pytest.param(
            "ModelTimeoutException", anthropic.InternalServerError, 504, "timeout_error", id="timeout"
        ),
    ],
)
def test_bedrock_errors_in_anthropics_shape(
    client: anthropic.Anthropic,
    error: str,
    exception: type[anthropic.APIStatusError],
    status: int,
    error_type: str,
) -> None:
    for stream in (False, True):
        with pytest.raises(exception) as caught:
            client.messages.create(
                model=HAIKU_45,
                max_tokens=20,
                messages=[{"role": "user", "content": f"[[sim: error={error}]]"}],
                stream=stream,
            )
        assert caught.value.status_code == status
        body = caught.value.body
        assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == error_type
        if status == 429:
            assert caught.value.response.headers["retry-after"] == "1"


def test_mid_stream_failure_is_an_error_event_and_is_metered(
    stack: Stack, client: anthropic.Anthropic
) -> None:
    session, headers = claude_code_session()
    texts: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(
            model=HAIKU_45,
            max_tokens=100,
            messages=[
                {"role": "user", "content": "[[sim: tokens=8 stream_error=throttlingException after=2]]"}
            ],
            extra_headers=headers,
        ) as stream,
    ):
        texts.extend(stream.text_stream)
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert len(texts) == 2
    row = session_thread(stack, session)
    assert row["status"] == "error" and row["estimated"] is True and row["tokens_in"] > 0
    assert row["completion"] == "".join(texts)


def test_requests_bedrock_cannot_serve_are_clear_400s(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as not_claude:
        client.messages.create(model="nova-pro", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert "/v1/chat/completions" in not_claude.value.message
    with pytest.raises(anthropic.BadRequestError) as no_max_tokens:
        client.post(
            "/v1/messages",
            body={"model": HAIKU_45, "messages": [{"role": "user", "content": "x"}]},
            cast_to=object,
        )
    assert "max_tokens" in no_max_tokens.value.message
    with pytest.raises(anthropic.BadRequestError) as empty:
        client.messages.create(model=HAIKU_45, max_tokens=10, messages=[{"role": "user", "content": ""}])
    assert "messages.0.content: content must not be empty" in empty.value.message
    with pytest.raises(anthropic.BadRequestError) as not_json:
        client.post("/v1/messages", content=b"{oops", cast_to=object)
    assert "not valid JSON" in not_json.value.message
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="claude-9", max_tokens=10, messages=[{"role": "user", "content": "x"}])


def test_async_client(stack: Stack, key: dict[str, Any]) -> None:
    async def run() -> tuple[str, str]:
        async with anthropic.AsyncAnthropic(
            base_url=stack.base_url,
            api_key=key["api_key"],
            http_client=httpx2.AsyncClient(verify=stack.verify, timeout=30),
            max_retries=0,
        ) as sdk:
            plain = await sdk.messages.create(
                model="claude-opus-4-8", max_tokens=50, messages=[{"role": "user", "content": "async"}]
            )
            async with sdk.messages.stream(
                model="claude-opus-4-8", max_tokens=50, messages=[{"role": "user", "content": "async"}]
            ) as stream:
                text = "".join([t async for t in stream.text_stream])
            block = plain.content[0]
            return (block.text if block.type == "text" else ""), text

    plain, streamed = asyncio.run(run())
    assert plain == streamed and plain.startswith("Simulated answer to: async.")


def test_models_for_claude_code_discovery(stack: Stack, key: dict[str, Any]) -> None:
    with stack.client() as http:
        response = http.get("/v1/models?limit=1000", headers={"x-api-key": key["api_key"]})
    body = response.json()
    assert response.status_code == 200 and body["has_more"] is False
    claude = [m for m in body["data"] if "claude" in m["id"]]
    assert claude and all(m["type"] == "model" and m["display_name"] and m["created_at"] for m in claude)


def test_a_beta_bedrock_refuses_is_retried_without_betas(stack: Stack, client: anthropic.Anthropic) -> None:
    """The betas Bedrock takes change over time: if it says "invalid beta flag", call again without."""
    admin = stack.create_key("beta-admin", role="admin")["api_key"]
    betas = sorted(CATALOGUE.entry("claude-opus-4-8").betas | {"made-up-beta-2030-01-01"})  # type: ignore[union-attr]
    edited = stack.admin(
        "POST", "/admin/model/update", admin, json={"name": "claude-opus-4-8", "betas": betas}
    )
    assert edited.status_code == 200, edited.text
    time.sleep(0.5)  # the translator follows the change notification
    message = client.messages.create(
        model="claude-opus-4-8",
        max_tokens=20,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": "made-up-beta-2030-01-01"},
    )
    assert message.stop_reason == "end_turn"
    stack.admin("POST", "/admin/model/reset", admin, json={"name": "claude-opus-4-8"})
