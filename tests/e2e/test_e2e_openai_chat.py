"""OpenAI Chat Completions through Envoy with the official SDK (sync and async, stream and not).

Parameters, tools, JSON output, images, reasoning with signed thinking, prompt caching,
usage, finish reasons, keep-alives and Bedrock's errors, each checked on the client's side
and on the thread the meter wrote.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest
from e2e_clients import async_openai_sdk, openai_sdk, session_thread
from stack_process import Stack, start_stack, stop_stack

from core.catalogue import CATALOGUE
from core.pricing import fee_for

pytestmark = pytest.mark.e2e

HAIKU = "claude-3-haiku"
SONNET_37 = "claude-3-7-sonnet"  # reasoning and caching
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n a tiny fake png").decode()
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
KEEPALIVE_S = 0.3


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Stack]:
    """The stack with short keep-alives, so a slow first token shows them."""
    running = start_stack(
        tmp_path_factory.mktemp("brproxy"), database_url, env={"BRPROXY_SSE_KEEPALIVE_S": str(KEEPALIVE_S)}
    )
    try:
        yield running
    finally:
        assert not stop_stack(running)


@pytest.fixture(scope="module")
def key(stack: Stack) -> dict[str, Any]:
    return stack.create_key("openai-user", month_quota="5", balance="5")


@pytest.fixture(scope="module")
def client(stack: Stack, key: dict[str, Any]) -> Iterator[openai.OpenAI]:
    with openai_sdk(stack, key["api_key"]) as sdk:
        yield sdk


def session() -> dict[str, dict[str, str]]:
    return {"extra_headers": {"Session-Id": "s-" + uuid.uuid4().hex}}


def session_of(kwargs: dict[str, Any]) -> str:
    return str(kwargs["extra_headers"]["Session-Id"])


# --- parameters ------------------------------------------------------------------------------


def test_parameters_are_honoured_and_user_is_recorded(stack: Stack, client: openai.OpenAI) -> None:
    s = session()
    reply = client.chat.completions.create(
        model=HAIKU,
        messages=[{"role": "user", "content": "params [[sim: tokens=30]]"}],
        temperature=0,
        top_p=0,
        max_completion_tokens=5,
        seed=7,
        user="end-user-42",
        **s,
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 5
    row = session_thread(stack, session_of(s))
    assert row["end_user"] == "end-user-42"
    assert row["tokens_out"] == 5


@pytest.mark.parametrize(
    "stop", [pytest.param("simulator", id="string"), pytest.param(["x", "keeps"], id="list")]
)
def test_stop_sequences(client: openai.OpenAI, stop: str | list[str]) -> None:
    reply = client.chat.completions.create(
        model=HAIKU, messages=[{"role": "user", "content": "hi"}], stop=stop
    )
    assert reply.choices[0].finish_reason == "stop"
    assert "keeps" not in (reply.choices[0].message.content or "")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        pytest.param({"n": 2}, "n", id="n-2"),
        pytest.param({"logprobs": True}, "logprobs", id="logprobs"),
        pytest.param({"messages": []}, "messages", id="empty-messages"),
        pytest.param(
            {"messages": [{"role": "user", "content": ""}]}, "messages[0].content", id="empty-content"
        ),
        pytest.param({"temperature": "hot"}, "temperature", id="wrong-type"),
        pytest.param({"response_format": {"type": "xml"}}, "response_format.type", id="bad-response-format"),
        pytest.param({"reasoning_effort": "extreme"}, "reasoning_effort", id="bad-effort"),
    ],
)
def test_bad_requests_name_the_field(client: openai.OpenAI, extra: dict[str, Any], param: str) -> None:
    body: dict[str, Any] = {"model": HAIKU, "messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(openai.BadRequestError) as refused:
        client.post("/chat/completions", body=body, cast_to=object)
    assert refused.value.status_code == 400
    assert refused.value.param == param


# --- tools -----------------------------------------------------------------------------------


def test_tool_round_trip(stack: Stack, client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris? [[sim: tool=get_weather]]"}]
    first = client.chat.completions.create(model=HAIKU, messages=messages, tools=[WEATHER, TIME_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == {"city": "city-1"}  # type: ignore[union-attr]
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "18C and sunny"},
    ]
    second = client.chat.completions.create(model=HAIKU, messages=messages, tools=[WEATHER, TIME_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content
    # tool_choice "none" with tools in the history still works (Bedrock needs the toolConfig).
    messages += [
        second.choices[0].message.model_dump(exclude_none=True),
        {"role": "user", "content": "thanks"},
    ]
    third = client.chat.completions.create(
        model=HAIKU, messages=messages, tools=[WEATHER], tool_choice="none"
    )
    assert third.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("tool_choice", "name"),
    [
        pytest.param("required", "get_weather", id="required"),
        pytest.param({"type": "function", "function": {"name": "get_time"}}, "get_time", id="named"),
    ],
)
def test_forced_tool_choice(client: openai.OpenAI, tool_choice: Any, name: str) -> None:
    reply = client.chat.completions.create(
        model=HAIKU,
        messages=[{"role": "user", "content": "go"}],
        tools=[WEATHER, TIME_TOOL],
        tool_choice=tool_choice,
    )
    calls = reply.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.name == name  # type: ignore[union-attr]


def test_streamed_parallel_tool_calls_have_stable_indices(stack: Stack, client: openai.OpenAI) -> None:
    s = session()
    stream = client.chat.completions.create(
        model=HAIKU,
        messages=[{"role": "user", "content": "both [[sim: tool=get_weather tool=get_time tokens=3]]"}],
        tools=[WEATHER, TIME_TOOL],
        stream=True,
        **s,
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    starts = [(t.index, t.id, t.function.name) for d in deltas for t in d.tool_calls or [] if t.id]  # type: ignore[union-attr]
    assert [(i, n) for i, _, n in starts] == [(0, "get_weather"), (1, "get_time")]
    arguments: dict[int, str] = {}
    for d in deltas:
        for t in d.tool_calls or []:
            arguments[t.index] = arguments.get(t.index, "") + (t.function.arguments or "")  # type: ignore[union-attr]
    assert json.loads(arguments[0]) == {"city": "city-1"} and json.loads(arguments[1]) == {}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "tool_calls"
    ]
    assert "".join(d.content or "" for d in deltas).startswith("Simulated")
    # The stream helper of the SDK assembles the same calls.
    with client.chat.completions.stream(
        model=HAIKU,
        messages=[{"role": "user", "content": "both [[sim: tool=get_weather tool=get_time]]"}],
        tools=[WEATHER, TIME_TOOL],
    ) as helper:
        final = helper.get_final_completion()
    assert [c.function.name for c in final.choices[0].message.tool_calls or []] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert session_thread(stack, session_of(s))["tokens_out"] > 0


# --- JSON output -----------------------------------------------------------------------------


def test_response_format_json_schema(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}, "score": {"type": "integer"}}}
    reply = client.chat.completions.create(
        model=HAIKU,
        messages=[{"role": "user", "content": "rate it"}],
        response_format={"type": "json_schema", "json_schema": {"name": "rating", "schema": schema}},
    )
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.tool_calls is None
    assert json.loads(reply.choices[0].message.content or "") == {"answer": "answer-1", "score": 1}
    stream = client.chat.completions.create(
        model=HAIKU,
        messages=[{"role": "user", "content": "as JSON"}],
        response_format={"type": "json_object"},
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert json.loads(text) == {}
    assert all(not c.choices or not c.choices[0].delta.tool_calls for c in chunks)


def test_response_format_on_a_model_without_tools_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="llama3-8b",
            messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_object"},
        )
    assert refused.value.param == "response_format"


# --- images ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mime", ["image/png", "image/jpeg", "image/gif", "image/webp"])
def test_data_uri_images_are_sent_as_bytes(client: openai.OpenAI, mime: str) -> None:
    text_only = client.chat.completions.create(model=HAIKU, messages=[{"role": "user", "content": "look"}])
    with_image = client.chat.completions.create(
        model=HAIKU,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{PNG}"}},
                ],
            }
        ],
    )
    assert with_image.usage is not None and text_only.usage is not None
    assert with_image.usage.prompt_tokens == text_only.usage.prompt_tokens + 256


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("https://example.com/cat.png", "not fetched", id="https-url"),
        pytest.param(
            "data:image/png;base64," + base64.b64encode(b"\0" * 3_750_001).decode(), "limit", id="oversize"
        ),
    ],
)
def test_bad_images_are_400(client: openai.OpenAI, url: str, message: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=HAIKU,
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
        )
    assert message in refused.value.message


# --- reasoning -------------------------------------------------------------------------------


def test_reasoning_round_trips_signed_and_redacted_thinking_through_tool_use(client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "think, then call [[sim: tool=get_weather redacted]]"}]
    first = client.chat.completions.create(
        model=SONNET_37, messages=messages, tools=[WEATHER], reasoning_effort="low"
    )
    message = first.choices[0].message.model_dump(exclude_none=True)
    assert message["reasoning_content"].startswith("Thinking about: think, then call")
    assert [b["type"] for b in message["thinking_blocks"]] == ["redacted_thinking", "thinking"]
    assert message["thinking_blocks"][1]["signature"]
    call = message["tool_calls"][0]
    messages += [message, {"role": "tool", "tool_call_id": call["id"], "content": "18C"}]
    # The simulator refuses a tool turn whose thinking is missing or whose signature changed.
    second = client.chat.completions.create(
        model=SONNET_37, messages=messages, tools=[WEATHER], reasoning_effort="low"
    )
    assert second.choices[0].finish_reason == "stop"
    tampered = json.loads(json.dumps(messages))
    tampered[1]["thinking_blocks"][1]["thinking"] = "edited"
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=SONNET_37, messages=tampered, tools=[WEATHER], reasoning_effort="low"
        )
    assert "signature" in refused.value.message


def test_streamed_reasoning_and_thinking_budget(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=SONNET_37,
        messages=[{"role": "user", "content": "why [[sim: reasoning_tokens=4]]"}],
        extra_body={"thinking": {"type": "enabled", "budget_tokens": 2048}},
        stream=True,
    )
    deltas = [c.choices[0].delta.model_dump(exclude_none=True) for c in stream if c.choices]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    assert reasoning.startswith("Thinking about: why")
    blocks = [b for d in deltas for b in d.get("thinking_blocks", [])]
    assert blocks == [{"type": "thinking", "thinking": reasoning, "signature": blocks[0]["signature"]}]
    assert "".join(d.get("content") or "" for d in deltas).startswith("Simulated answer")


def test_reasoning_on_a_model_without_it_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=HAIKU, messages=[{"role": "user", "content": "x"}], reasoning_effort="high"
        )
    assert refused.value.param == "reasoning_effort"


# --- caching and usage -----------------------------------------------------------------------


def test_cache_control_reads_and_writes_are_reported_and_billed(stack: Stack, client: openai.OpenAI) -> None:
    system = [
        {"type": "text", "text": f"{uuid.uuid4()} " + "policy " * 300, "cache_control": {"type": "ephemeral"}}
    ]
    usages = []
    sessions = []
    for _ in range(2):
        s = session()
        sessions.append(session_of(s))
        reply = client.chat.completions.create(
            model=SONNET_37,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": "question"}],  # type: ignore[list-item]
            **s,
        )
        usages.append(reply.usage)
    first, second = usages
    assert first is not None and second is not None
    assert first.prompt_tokens == second.prompt_tokens
    assert first.prompt_tokens_details is not None and first.prompt_tokens_details.cached_tokens == 0
    assert second.prompt_tokens_details is not None and second.prompt_tokens_details.cached_tokens > 500
    written, read = (session_thread(stack, s) for s in sessions)
    assert (
        written["cache_write_tokens"]
        == read["cache_read_tokens"]
        == second.prompt_tokens_details.cached_tokens
    )
    resolved = CATALOGUE.resolve(SONNET_37)
    assert resolved is not None
    prices = resolved.prices
    assert (
        read["price_cache_read"] == prices.cache_read and written["price_cache_write"] == prices.cache_write
    )
    assert read["fee"] == fee_for(prices, read["tokens_in"] - read["cache_read_tokens"], read["tokens_out"],
                                  read["cache_read_tokens"], 0)  # fmt: skip
    assert read["fee"] < written["fee"]


def test_usage_is_metered_even_when_the_stream_does_not_ask_for_it(
    stack: Stack, client: openai.OpenAI
) -> None:
    s = session()
    chunks = list(
        client.chat.completions.create(
            model=HAIKU, messages=[{"role": "user", "content": "count [[sim: tokens=9]]"}], stream=True, **s
        )
    )
    assert all(c.usage is None for c in chunks)
    row = session_thread(stack, session_of(s))
    assert row["tokens_out"] == 9 and row["estimated"] is False


# --- keep-alives and errors -------------------------------------------------------------------


def test_keepalives_while_waiting_for_the_first_token(stack: Stack, key: dict[str, Any]) -> None:
    body = {
        "model": HAIKU,
        "stream": True,
        "messages": [{"role": "user", "content": "slow start [[sim: latency_ms=1200 tokens=2]]"}],
    }
    with (
        stack.client(key["api_key"]) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    first_data = next(i for i, line in enumerate(lines) if line.startswith("data: "))
    assert lines[:first_data] and all(line == ": keep-alive" for line in lines[:first_data])
    assert lines[-1] == "data: [DONE]"


def test_anthropic_pings_while_waiting_for_the_first_token(stack: Stack, key: dict[str, Any]) -> None:
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 20,
        "stream": True,
        "messages": [{"role": "user", "content": "slow start [[sim: latency_ms=1200 tokens=2]]"}],
    }
    headers = {"x-api-key": key["api_key"]}
    with stack.client() as http, http.stream("POST", "/v1/messages", json=body, headers=headers) as response:
        assert response.status_code == 200
        events = [line for line in response.iter_lines() if line.startswith("event: ")]
    first = events.index("event: message_start")
    assert first >= 2 and set(events[:first]) == {"event: ping"}
    assert events[-1] == "event: message_stop"


@pytest.mark.parametrize(
    ("error", "exception", "status"),
    [
        pytest.param("ValidationException", openai.BadRequestError, 400, id="validation"),
        pytest.param("AccessDeniedException", openai.PermissionDeniedError, 403, id="access-denied"),
        pytest.param("ResourceNotFoundException", openai.NotFoundError, 404, id="not-found"),
        pytest.param("ThrottlingException", openai.RateLimitError, 429, id="throttling"),
        pytest.param("ServiceQuotaExceededException", openai.RateLimitError, 429, id="quota"),
        pytest.param("ModelNotReadyException", openai.InternalServerError, 503, id="not-ready"),
        pytest.param("ServiceUnavailableException", openai.InternalServerError, 503, id="unavailable"),
        pytest.param("ModelTimeoutException", openai.InternalServerError, 504, id="timeout"),
        pytest.param("ModelErrorException", openai.InternalServerError, 502, id="model-error"),
    ],
)
def test_bedrock_errors_map_to_status_and_shape(
    client: openai.OpenAI, error: str, exception: type[openai.APIStatusError], status: int
) -> None:
    for stream in (False, True):
        with pytest.raises(exception) as caught:
            reply = client.chat.completions.create(
                model=HAIKU, messages=[{"role": "user", "content": f"[[sim: error={error}]]"}], stream=stream
            )
            if stream:
                list(reply)  # type: ignore[arg-type]
        assert caught.value.status_code == status
        assert isinstance(caught.value.body, dict) and caught.value.body["type"]
        if status == 429:
            assert caught.value.response.headers["retry-after"] == "1"


def test_mid_stream_failure_ends_with_an_error_and_is_metered(stack: Stack, client: openai.OpenAI) -> None:
    s = session()
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(
            model=HAIKU,
            messages=[
                {"role": "user", "content": "fail [[sim: tokens=8 stream_error=throttlingException after=3]]"}
            ],
            stream=True,
            **s,
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert not isinstance(caught.value, openai.APIStatusError)
    assert len(received) == 3
    row = session_thread(stack, session_of(s))
    assert row["status"] == "error" and row["estimated"] is True
    assert row["completion"] == "".join(received) and row["tokens_out"] > 0 and row["fee"] > 0


# --- async -----------------------------------------------------------------------------------


def test_async_client_stream_and_not(stack: Stack, key: dict[str, Any]) -> None:
    async def run() -> tuple[str, str]:
        async with async_openai_sdk(stack, key["api_key"]) as sdk:
            plain = await sdk.chat.completions.create(
                model=HAIKU, messages=[{"role": "user", "content": "async"}]
            )
            stream = await sdk.chat.completions.create(
                model=HAIKU, messages=[{"role": "user", "content": "async"}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return plain.choices[0].message.content or "", text

    plain, streamed = asyncio.run(run())
    assert plain == streamed and plain.startswith("Simulated answer to: async.")


# --- models and catalogue ---------------------------------------------------------------------


def test_models_list_follows_admin_edits_and_allowlists(stack: Stack, client: openai.OpenAI) -> None:
    admin = stack.create_key("catalogue-admin", role="admin")["api_key"]
    limited = stack.create_key("limited", month_quota="1")
    ids = {m.id for m in client.models.list().data}
    assert {"claude-3-haiku", "claude-sonnet-4-5", "nova-pro", "llama3-70b"} <= ids
    assert "titan-embed-text-v2" not in ids
    # An allowlist: only those models are listed and callable.
    set_access = stack.admin(
        "POST",
        "/admin/model/access",
        admin,
        json={"key_id": limited["id"], "models": ["claude-3-haiku-20240307"]},
    )
    assert set_access.status_code == 200 and set_access.json()["data"]["models"] == ["claude-3-haiku"]
    with openai_sdk(stack, limited["api_key"]) as sdk:
        deadline = time.monotonic() + 2
        while [m.id for m in sdk.models.list().data] != ["claude-3-haiku"]:
            assert time.monotonic() < deadline, "the allowlist did not reach the translator"
            time.sleep(0.05)
        with pytest.raises(openai.PermissionDeniedError):
            sdk.chat.completions.create(model="nova-pro", messages=[{"role": "user", "content": "x"}])
        assert sdk.chat.completions.create(model=HAIKU, messages=[{"role": "user", "content": "x"}]).choices
    # A disabled model disappears and is a 404.
    stack.admin("POST", "/admin/model/update", admin, json={"name": "nova-micro", "enabled": False})
    deadline = time.monotonic() + 2
    while "nova-micro" in {m.id for m in client.models.list().data}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nova-micro", messages=[{"role": "user", "content": "x"}])


def test_the_meter_bills_admin_edited_prices(stack: Stack, client: openai.OpenAI) -> None:
    admin = stack.create_key("price-admin", role="admin")["api_key"]
    edited = stack.admin(
        "POST",
        "/admin/model/update",
        admin,
        json={"name": "llama3-70b", "price_input": "100", "price_output": 200},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["data"]["overridden"] is True
    time.sleep(0.5)  # both the translator and the meter follow the change notification
    s = session()
    reply = client.chat.completions.create(
        model="llama3-70b", messages=[{"role": "user", "content": "pricey"}], **s
    )
    assert reply.usage is not None
    row = session_thread(stack, session_of(s))
    assert row["price_in"] == Decimal(100) and row["price_out"] == Decimal(200)
    assert (
        row["fee"]
        == (Decimal(100) * reply.usage.prompt_tokens + Decimal(200) * reply.usage.completion_tokens) / 10**6
    )
    reset = stack.admin("POST", "/admin/model/reset", admin, json={"name": "llama3-70b"})
    assert reset.status_code == 200 and reset.json()["data"]["price_input"] == 2.65
