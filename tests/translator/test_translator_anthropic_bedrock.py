"""Anthropic Messages ⇄ Bedrock InvokeModel, table-driven over recorded fixtures.

- `tests/fixtures/anthropic_bedrock/<case>.json`: `{"model": <catalogue name>, "betas": [the
  anthropic-beta header], "anthropic": <client body>, "bedrock": <the InvokeModel body BRProxy
  must send>, "dropped": [betas left out]}`.
- `tests/fixtures/anthropic_stream/<case>.json`: `{"model", "events": [Bedrock's Anthropic
  events, as its `chunk` frames carry them], "completion", "stop_reason", "usage": [in, out,
  cache read, cache write], "latency"}`.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from core.catalogue import CATALOGUE
from translator.anthropic_bedrock import (
    AnthropicRequest,
    AnthropicStream,
    AnthropicUsage,
    count_tokens_body,
    message_body,
    parse_betas,
    sse_frame,
)
from translator.converse_helpers import MAX_IMAGE_BYTES, InvalidRequest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def cases(folder: str) -> list[Any]:
    return [
        pytest.param(json.loads(path.read_text("utf-8")), id=path.stem)
        for path in sorted((FIXTURES / folder).glob("*.json"))
    ]


def entry(name: str) -> Any:
    found = CATALOGUE.entry(name)
    assert found is not None
    return found


@pytest.mark.parametrize("case", cases("anthropic_bedrock"))
def test_to_bedrock(case: dict[str, Any]) -> None:
    request = AnthropicRequest.parse(orjson.dumps(case["anthropic"]))
    assert request.model == case["anthropic"]["model"]
    assert request.stream is bool(case["anthropic"].get("stream"))
    body, dropped = request.to_bedrock(entry(case["model"]), case["betas"])
    assert body == case["bedrock"]
    assert dropped == case["dropped"]
    # The client's body is never changed in place (a retry without betas starts from it).
    assert request.body == case["anthropic"]


def test_retry_without_betas_drops_the_gated_fields() -> None:
    raw = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        "output_config": {"effort": "low"},
    }
    request = AnthropicRequest.parse(orjson.dumps(raw))
    with_betas, _ = request.to_bedrock(entry("claude-opus-4-6"), ["effort-2025-11-24"])
    without, dropped = request.to_bedrock(entry("claude-opus-4-6"), [])
    assert with_betas["output_config"] == {"effort": "low"} and with_betas["anthropic_beta"] == [
        "effort-2025-11-24"
    ]
    assert "output_config" not in without and "anthropic_beta" not in without and dropped == []


@pytest.mark.parametrize(
    ("headers", "betas"),
    [
        pytest.param([""], [], id="empty"),
        pytest.param(["a,b"], ["a", "b"], id="comma-list"),
        pytest.param([" a , b ,", "b, c"], ["a", "b", "c"], id="spaces-repeats-lines"),
    ],
)
def test_parse_betas(headers: list[str], betas: list[str]) -> None:
    assert parse_betas(headers) == betas


def body(**fields: Any) -> bytes:
    base: dict[str, Any] = {
        "model": "claude-3-haiku",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not None})


def user(content: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": content}]


def image(source: dict[str, Any]) -> list[dict[str, Any]]:
    return user([{"type": "image", "source": source}])


C0 = "messages.0.content.0"


PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}

ERRORS = [
    pytest.param(b"{", None, "not valid JSON", id="invalid-json"),
    pytest.param(b"[1]", "body", "JSON object", id="not-an-object"),
    pytest.param(body(model=""), "model", "model", id="empty-model"),
    pytest.param(orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]}), "max_tokens",
                 "max_tokens", id="missing-max-tokens"),
    pytest.param(body(max_tokens=0), "max_tokens", "max_tokens", id="zero-max-tokens"),
    pytest.param(body(max_tokens=True), "max_tokens", "max_tokens", id="bool-max-tokens"),
    pytest.param(body(messages=[]), "messages", "messages", id="empty-messages"),
    pytest.param(body(messages=["x"]), "messages.0", "object", id="message-not-object"),
    pytest.param(body(messages=[{"role": "system", "content": "x"}]), "messages.0.role", "role",
                 id="bad-role"),
    pytest.param(body(messages=user("")), "messages.0.content", "empty", id="empty-content"),
    pytest.param(body(messages=user([])), "messages.0.content", "empty", id="empty-blocks"),
    pytest.param(body(messages=user(5)), "messages.0.content", "string or a list", id="content-number"),
    pytest.param(body(messages=user([{"text": "x"}])), C0, "type", id="block-without-type"),
    pytest.param(body(messages=user([{"type": "text", "text": 1}])), f"{C0}.text", "string",
                 id="text-not-string"),
    pytest.param(body(messages=image({"type": "url", "url": "http://169.254.169.254/"})), f"{C0}.source.type",
                 "inline as base64", id="url-image"),
    pytest.param(body(messages=image({"type": "file", "file_id": "file_1"})), f"{C0}.source.type",
                 "not supported", id="file-image"),
    pytest.param(body(messages=image({**PNG, "media_type": "image/bmp"})), f"{C0}.source.media_type",
                 "media_type", id="bmp"),
    pytest.param(body(messages=image({**PNG, "data": "%%%"})), f"{C0}.source.data", "base64",
                 id="bad-base64"),
    pytest.param(body(messages=image({**PNG, "data": base64.b64encode(bytes(MAX_IMAGE_BYTES + 1)).decode()})),
                 f"{C0}.source.data", "limit", id="oversize"),
    pytest.param(body(messages=user([{"type": "tool_result", "content": "x"}])), f"{C0}.tool_use_id",
                 "tool_use_id", id="tool-result-without-id"),
    pytest.param(body(messages=user([{"type": "tool_result", "tool_use_id": "t",
                                      "content": image({"type": "url", "url": "x"})[0]["content"]}])),
                 f"{C0}.content.0.source.type", "base64", id="url-image-in-tool-result"),
    pytest.param(body(system=5), "system", "system", id="system-number"),
    pytest.param(body(system=[{"type": "image"}]), "system.0", "text blocks", id="system-image"),
    pytest.param(body(temperature="hot"), "temperature", "number", id="temperature-string"),
    pytest.param(body(tools={"name": "x"}), "tools", "list", id="tools-not-list"),
    pytest.param(body(tools=[{"description": "no name"}]), "tools.0", "name", id="tool-without-name"),
    pytest.param(body(stream="yes"), "stream", "boolean", id="stream-string"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "param", "message"), ERRORS)
def test_invalid_requests(raw: bytes, param: str | None, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        AnthropicRequest.parse(raw)
    assert caught.value.param == param and caught.value.status == 400
    assert message in caught.value.message


def test_prefill_may_be_empty_and_count_tokens_needs_no_max_tokens() -> None:
    prefill = body(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}])
    assert AnthropicRequest.parse(prefill).body["messages"][1]["content"] == ""
    counted = AnthropicRequest.parse(orjson.dumps({"model": "m", "messages": user("x")}), count_tokens=True)
    invoke, _ = counted.to_bedrock(entry("claude-3-haiku"), [])
    request = orjson.loads(count_tokens_body(invoke))
    sent = orjson.loads(base64.b64decode(request["input"]["invokeModel"]["body"]))
    assert sent == {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 1024,
                    "messages": [{"role": "user", "content": "x"}]}  # fmt: skip


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        pytest.param([*user("a"), {"role": "assistant", "content": "b"},
                      *user([{"type": "text", "text": "c"}, {"type": "text", "text": "d"}])], "cd",
                     id="last-user-blocks"),
        pytest.param([*user("q"), {"role": "assistant", "content": "a"}], "q", id="string"),
    ],
)  # fmt: skip
def test_last_user_text_and_whole_prompt(messages: list[dict[str, Any]], expected: str) -> None:
    request = AnthropicRequest.parse(body(messages=messages, system="S"))
    assert request.last_user_text() == expected
    assert request.whole_prompt() == {"messages": messages, "system": "S"}


def test_message_body_keeps_bedrocks_answer_with_the_clients_model() -> None:
    response = {
        "id": "msg_bdrk_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-haiku-20240307",
        "content": [{"type": "text", "text": "Hi"}, {"type": "tool_use", "id": "t", "name": "f", "input": {}},
                    {"type": "text", "text": " there"}],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 7, "cache_read_input_tokens": 3,
                  "cache_creation_input_tokens": 2},
    }  # fmt: skip
    answer, text, usage = message_body(response, "claude-3-haiku")
    assert answer == {**response, "model": "claude-3-haiku"}
    assert text == "Hi there"
    assert (usage.input, usage.output, usage.cache_read, usage.cache_write, usage.reported) == (
        5,
        7,
        3,
        2,
        True,
    )
    _, _, missing = message_body({"content": []}, "m")
    assert missing.reported is False


def event_of(frame: bytes) -> dict[str, Any]:
    event_line, data_line, *rest = frame.decode().split("\n")
    assert rest == ["", ""]
    event: dict[str, Any] = json.loads(data_line.removeprefix("data: "))
    assert event_line == f"event: {event['type']}"
    return event


@pytest.mark.parametrize("case", cases("anthropic_stream"))
def test_stream(case: dict[str, Any]) -> None:
    stream = AnthropicStream(case["model"])
    frames = [frame for event in case["events"] for frame in stream.on_event(event)]
    sent = [event_of(frame) for frame in frames]
    expected = []
    for event in case["events"]:
        if event["type"] == "message_start":
            event = {**event, "message": {**event["message"], "model": case["model"]}}
            expected += [event, {"type": "ping"}]
        elif event["type"] == "message_stop":
            expected.append({"type": "message_stop"})
        else:
            expected.append(event)
    assert sent == expected
    assert stream.completion == case["completion"]
    assert stream.stop_reason == case["stop_reason"]
    usage = stream.usage
    assert [usage.input, usage.output, usage.cache_read, usage.cache_write] == case["usage"]
    assert usage.reported is (case["stop_reason"] is not None)
    assert stream.invocation_latency_ms == case["latency"]
    assert stream.finished is any(e["type"] == "message_stop" for e in case["events"])


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (429, "rate_limit_error"),
        (503, "overloaded_error"),
        (502, "api_error"),
        (400, "invalid_request_error"),
    ],
)
def test_error_frame(status: int, error_type: str) -> None:
    assert event_of(AnthropicStream.error_frame(status, "boom")) == {
        "type": "error",
        "error": {"type": error_type, "message": "boom"},
    }


def test_frames_are_single_line_json() -> None:
    frame = sse_frame({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "a\nb"}})
    assert frame.count(b"\n") == 3
    assert AnthropicStream.ping_frame() == b'event: ping\ndata: {"type":"ping"}\n\n'


def test_usage_ignores_what_is_not_a_count() -> None:
    usage = AnthropicUsage()
    usage.update(None)
    usage.update({"input_tokens": True, "output_tokens": "3", "cache_read_input_tokens": 4})
    usage.take_metrics("nonsense")
    assert (usage.input, usage.output, usage.cache_read, usage.reported) == (0, 0, 4, False)
