"""Bedrock Converse response → OpenAI `chat.completion` (non-streaming)."""

from __future__ import annotations

from typing import Any

import pytest

from translator.openai_bedrock import TokenUsage, chat_completion, finish_reason

CREATED = 1_700_000_000


def usage(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def converse(content: list[dict[str, Any]], stop: str | None = "end_turn", **extra: Any) -> dict[str, Any]:
    response: dict[str, Any] = {
        "output": {"message": {"role": "assistant", "content": content}},
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
        "metrics": {"latencyMs": 420},
    }
    if stop is not None:
        response["stopReason"] = stop
    response.update(extra)
    return response


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


CASES = [
    pytest.param(
        converse([{"text": "Hello"}, {"text": ", world"}]),
        {"role": "assistant", "content": "Hello, world"},
        "stop",
        "Hello, world",
        usage(10, 5),
        id="text",
    ),
    pytest.param(
        converse(
            [{"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}],
            "tool_use",
        ),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [call("tooluse_1", "get_weather", '{"city":"Paris"}')],
        },
        "tool_calls",
        "",
        usage(10, 5),
        id="tool-use-only-content-null",
    ),
    pytest.param(
        converse(
            [
                {"text": "Checking both."},
                {"toolUse": {"toolUseId": "a", "name": "get_weather", "input": {"city": "Paris"}}},
                {"toolUse": {"toolUseId": "b", "name": "get_time", "input": {}}},
            ],
            "tool_use",
        ),
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [call("a", "get_weather", '{"city":"Paris"}'), call("b", "get_time", "{}")],
        },
        "tool_calls",
        "Checking both.",
        usage(10, 5),
        id="text-and-two-tool-calls",
    ),
    pytest.param(
        converse([{"toolUse": {"toolUseId": "c", "name": "noargs"}}], "tool_use"),
        {"role": "assistant", "content": None, "tool_calls": [call("c", "noargs", "{}")]},
        "tool_calls",
        "",
        usage(10, 5),
        id="tool-use-without-input",
    ),
    pytest.param(
        converse(
            [
                {"reasoningContent": {"reasoningText": {"text": "Think", "signature": "sig"}}},
                {"reasoningContent": {"reasoningText": {"text": " more."}}},
                {"reasoningContent": {"redactedContent": "b3BhcXVl"}},
                {"text": "42"},
            ]
        ),
        {
            "role": "assistant",
            "content": "42",
            "reasoning_content": "Think more.",
            # Signed and redacted blocks go back to the client to send again; unsigned ones cannot.
            "thinking_blocks": [
                {"type": "thinking", "thinking": "Think", "signature": "sig"},
                {"type": "redacted_thinking", "data": "b3BhcXVl"},
            ],
        },
        "stop",
        "42",
        usage(10, 5),
        id="reasoning",
    ),
    pytest.param(
        converse(
            [{"text": "cached"}],
            usage={
                "inputTokens": 10,
                "outputTokens": 5,
                "cacheReadInputTokens": 100,
                "cacheWriteInputTokens": 50,
                "totalTokens": 165,
            },
        ),
        {"role": "assistant", "content": "cached"},
        "stop",
        "cached",
        usage(160, 5, cached=100),
        id="cache-tokens-in-prompt-tokens",
    ),
    pytest.param(
        converse([]),
        {"role": "assistant", "content": ""},
        "stop",
        "",
        usage(10, 5),
        id="empty-content",
    ),
    pytest.param(
        {"output": {}, "stopReason": "content_filtered"},
        {"role": "assistant", "content": ""},
        "content_filter",
        "",
        usage(0, 0),
        id="no-message-no-usage",
    ),
    pytest.param(
        converse([{"text": "Once upon a"}], "max_tokens"),
        {"role": "assistant", "content": "Once upon a"},
        "length",
        "Once upon a",
        usage(10, 5),
        id="max-tokens",
    ),
]


@pytest.mark.parametrize(("response", "message", "finish", "text", "openai_usage"), CASES)
def test_chat_completion(
    response: dict[str, Any], message: dict[str, Any], finish: str, text: str, openai_usage: dict[str, Any]
) -> None:
    body, got_text, got_usage = chat_completion("chatcmpl-1", "claude-3-haiku", response, created=CREATED)
    assert body == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": CREATED,
        "model": "claude-3-haiku",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": openai_usage,
    }
    assert got_text == text
    assert got_usage.openai() == openai_usage
    assert got_usage.reported is True


def test_chat_completion_created_defaults_to_now() -> None:
    import time

    before = int(time.time())
    body, _, _ = chat_completion("c", "m", converse([{"text": "x"}]))
    assert before <= body["created"] <= int(time.time())


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        pytest.param("end_turn", "stop", id="end_turn"),
        pytest.param("stop_sequence", "stop", id="stop_sequence"),
        pytest.param("max_tokens", "length", id="max_tokens"),
        pytest.param("model_context_window_exceeded", "length", id="context-window"),
        pytest.param("tool_use", "tool_calls", id="tool_use"),
        pytest.param("content_filtered", "content_filter", id="content_filtered"),
        pytest.param("guardrail_intervened", "content_filter", id="guardrail_intervened"),
        pytest.param(None, "stop", id="missing"),
        pytest.param("", "stop", id="empty"),
        pytest.param("something_new", "stop", id="unknown"),
    ],
)
def test_finish_reason(stop_reason: str | None, finish: str) -> None:
    assert finish_reason(stop_reason) == finish
    response = converse([{"text": "x"}], stop_reason)
    body, _, _ = chat_completion("c", "m", response, created=CREATED)
    assert body["choices"][0]["finish_reason"] == finish


def test_token_usage_from_bedrock() -> None:
    usage_ = TokenUsage.from_bedrock({"inputTokens": 3, "outputTokens": 4, "cacheReadInputTokens": 5})
    assert (usage_.input, usage_.output, usage_.cache_read, usage_.cache_write, usage_.reported) == (
        3,
        4,
        5,
        0,
        True,
    )
    assert TokenUsage().reported is False
    assert TokenUsage().openai() == usage(0, 0)
