"""OpenAI ⇄ Converse beyond plain chat: fitting a request to its model, reasoning, JSON output.

The request side of these features is in `tests/fixtures/openai_converse/` (run by
`test_translator_openai_request.py`); this file covers what depends on the model's catalogue
entry, the answers (`chat_completion` and the stream) and the errors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from core.catalogue import CATALOGUE, ModelEntry
from translator.openai_bedrock import ChatCompletionStream, InvalidRequest, OpenAIChatRequest, chat_completion

STREAMS = Path(__file__).resolve().parent.parent / "fixtures" / "converse_stream"
IMAGE_PART = {"type": "image_url", "image_url": "data:image/png;base64,iVBORw0KGgo="}
CACHED_SYSTEM = {
    "role": "system",
    "content": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
}
TOOLS = [{"type": "function", "function": {"name": "f"}}]


def entry(name: str) -> ModelEntry:
    found = CATALOGUE.entry(name)
    assert found is not None
    return found


def request(**fields: Any) -> OpenAIChatRequest:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], **fields}
    return OpenAIChatRequest.parse(orjson.dumps(body))


def test_cache_points_are_dropped_for_models_without_caching() -> None:
    messages = [CACHED_SYSTEM, {"role": "user", "content": "Hi", "cache_control": {"type": "ephemeral"}}]
    kept = request(messages=messages).to_converse(entry("claude-3-7-sonnet"))
    dropped = request(messages=messages).to_converse(entry("claude-3-haiku"))
    assert kept["system"] == [{"text": "S"}, {"cachePoint": {"type": "default"}}]
    assert dropped["system"] == [{"text": "S"}]
    assert dropped["messages"][0]["content"] == [{"text": "Hi"}]


def test_deepseek_reasons_without_a_thinking_config() -> None:
    converse = request(reasoning_effort="high").to_converse(entry("deepseek-r1"))
    # Nothing to switch on; the effort still sizes the output ceiling (sent explicitly: it is
    # what authz reserved for, never the model's own larger default).
    assert "additionalModelRequestFields" not in converse
    assert converse["inferenceConfig"] == {"maxTokens": 16384 + 4096}
    kept = request(reasoning_effort="high", max_tokens=50000).to_converse(entry("deepseek-r1"))
    assert kept["inferenceConfig"] == {"maxTokens": 50000}


@pytest.mark.parametrize(
    ("fields", "model", "param", "message"),
    [
        pytest.param({"messages": [{"role": "user", "content": [IMAGE_PART]}]}, "claude-3-5-haiku",
                     "messages", "does not accept images", id="no-vision"),
        pytest.param({"tools": TOOLS}, "llama3-8b", "tools", "does not support tools", id="no-tools"),
        pytest.param({"response_format": {"type": "json_object"}}, "llama3-70b", "response_format",
                     "does not support tools", id="json-needs-tools"),
        pytest.param({"reasoning_effort": "low"}, "claude-3-haiku", "reasoning_effort",
                     "does not support reasoning", id="no-reasoning-effort"),
        pytest.param({"thinking": {"type": "enabled", "budget_tokens": 2000}}, "nova-pro", "thinking",
                     "does not support reasoning", id="no-reasoning-thinking"),
    ],
)  # fmt: skip
def test_features_the_model_lacks_are_400(
    fields: dict[str, Any], model: str, param: str, message: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        request(**fields).to_converse(entry(model))
    assert caught.value.param == param and message in caught.value.message


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        pytest.param({"reasoning_effort": "max"}, "reasoning_effort", "must be", id="unknown-effort"),
        pytest.param({"thinking": "on"}, "thinking", "object", id="thinking-not-object"),
        pytest.param({"thinking": {"type": "auto"}}, "thinking.type", "enabled", id="thinking-type"),
        pytest.param({"thinking": {"type": "enabled", "budget_tokens": 10}}, "thinking.budget_tokens", "1024",
                     id="small-budget"),
        pytest.param({"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 2048},
                     "max_tokens", "greater than thinking.budget_tokens", id="budget-not-below-max-tokens"),
        pytest.param({"reasoning_effort": "low", "max_tokens": 1024}, "max_tokens", "greater than 1024",
                     id="max-tokens-too-small-for-thinking"),
        pytest.param({"response_format": "json"}, "response_format", "object", id="response-format-string"),
        pytest.param({"response_format": {"type": "json_schema"}}, "response_format.json_schema", "name",
                     id="json-schema-without-name"),
        pytest.param({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": []}}},
                     "response_format.json_schema.schema", "object", id="json-schema-not-object"),
        pytest.param({"response_format": {"type": "json_object"}, "tools": TOOLS}, "response_format",
                     "cannot be combined with tools", id="json-with-tools"),
        pytest.param({"messages": [{"role": "assistant", "content": "x", "thinking_blocks": {}}]},
                     "messages[0].thinking_blocks", "list", id="thinking-blocks-not-list"),
        pytest.param({"messages": [{"role": "assistant", "content": "x", "thinking_blocks": [{}]}]},
                     "messages[0].thinking_blocks[0].type", "thinking", id="thinking-block-type"),
        pytest.param({"messages": [{"role": "assistant", "content": "x",
                                    "thinking_blocks": [{"type": "redacted_thinking"}]}]},
                     "messages[0].thinking_blocks[0].data", "data", id="redacted-without-data"),
        pytest.param({"messages": [{"role": "assistant", "thinking_blocks": [
            {"type": "thinking", "thinking": "t", "signature": "s"}]}]}, "messages[0].content",
                     "content or tool_calls", id="thinking-only-assistant"),
        pytest.param({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}],
                                    "cache_control": {"type": "ephemeral"}},
                                   {"role": "user", "content": [{"type": "text", "text": " ",
                                                                 "cache_control": {"type": "ephemeral"}}]}]},
                     "messages[1].content", "must not be empty", id="only-a-cache-point"),
    ],
)  # fmt: skip
def test_invalid_feature_requests(fields: dict[str, Any], param: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        request(**fields).to_converse()
    assert caught.value.param == param and message in caught.value.message


def converse_answer(content: list[dict[str, Any]], stop: str) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": {"inputTokens": 3, "outputTokens": 4},
    }


def test_json_tool_answer_is_content() -> None:
    response = converse_answer(
        [{"toolUse": {"toolUseId": "t", "name": "rating", "input": {"score": 5}}}], "tool_use"
    )
    body, text, _ = chat_completion("c", "m", response, created=1, json_tool="rating")
    assert body["choices"][0]["message"] == {"role": "assistant", "content": '{"score":5}'}
    assert body["choices"][0]["finish_reason"] == "stop" and text == '{"score":5}'
    # Another tool called besides it stays a tool call.
    both = converse_answer(
        [
            {"toolUse": {"toolUseId": "t", "name": "rating", "input": {}}},
            {"toolUse": {"toolUseId": "u", "name": "other", "input": {}}},
        ],
        "tool_use",
    )
    body, _, _ = chat_completion("c", "m", both, created=1, json_tool="rating")
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert [c["function"]["name"] for c in body["choices"][0]["message"]["tool_calls"]] == ["other"]


def stream_deltas(
    case: str, json_tool: str | None = None
) -> tuple[ChatCompletionStream, list[dict[str, Any]]]:
    stream = ChatCompletionStream("id", "m", False, created=1, json_tool=json_tool)
    frames = []
    for kind, payload in json.loads((STREAMS / f"{case}.json").read_text("utf-8"))["events"]:
        frames.extend(stream.on_event(kind, payload))
    return stream, [orjson.loads(frame[6:])["choices"][0] for frame in frames]


def test_streamed_json_tool_answer_is_content() -> None:
    stream, choices = stream_deltas("json_tool_answer", json_tool="rating")
    assert [c["delta"] for c in choices] == [{"content": '{"score":'}, {"content": "5}"}, {}]
    assert choices[-1]["finish_reason"] == "stop"
    assert stream.completion == '{"score":5}'


def test_streamed_redacted_and_signed_reasoning() -> None:
    _, choices = stream_deltas("redacted_then_signed_reasoning_then_tool")
    deltas = [c["delta"] for c in choices]
    assert deltas[:4] == [
        {"thinking_blocks": [{"type": "redacted_thinking", "data": "b3BhcXVl"}]},
        {"reasoning_content": "Call it"},
        {"reasoning_content": "."},
        {"thinking_blocks": [{"type": "thinking", "thinking": "Call it.", "signature": "c2ln"}]},
    ]
    assert deltas[4]["tool_calls"][0]["index"] == 0 and choices[-1]["finish_reason"] == "tool_calls"
