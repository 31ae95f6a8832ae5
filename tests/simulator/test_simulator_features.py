"""The simulator's tools, reasoning, cache points, images, embeddings, InvokeModel and CountTokens.

Planning is tested pure; the wire (InvokeModel, its event stream, CountTokens) through a real
boto3 client against the running simulator, so botocore itself checks the framing.
"""

from __future__ import annotations

import base64
import json
from contextlib import closing
from typing import Any

import orjson
import pytest
from botocore.eventstream import ChecksumMismatch
from botocore.exceptions import ClientError, EventStreamError
from simulator_process import boto3_client
from urllib3.exceptions import ProtocolError

from bedrock_simulator.anthropic_messages import anthropic_model_name, to_converse
from bedrock_simulator.embeddings import embed
from bedrock_simulator.errors import SimulatedError
from bedrock_simulator.responses import PromptCache, converse, parse_directives, redacted_data, signature_for

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake").decode()
WEATHER = {
    "toolSpec": {
        "name": "get_weather",
        "inputSchema": {
            "json": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer"},
                    "detailed": {"type": "boolean"},
                    "hours": {"type": "array", "items": {"type": "number"}},
                },
            }
        },
    }
}
TIME = {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object"}}}}
THINKING = {"thinking": {"type": "enabled", "budget_tokens": 1024}}


def user(*blocks: Any) -> dict[str, Any]:
    return {"role": "user", "content": [b if isinstance(b, dict) else {"text": b} for b in blocks]}


def assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


def plan(request: dict[str, Any], cache: PromptCache | None = None) -> Any:
    return converse(request, default_output_tokens=6, cache=cache)


# --- tools ---------------------------------------------------------------------------------


def test_tool_directive_answers_with_schema_derived_input() -> None:
    answer = plan(
        {"messages": [user("weather? [[sim: tool=get_weather]]")], "toolConfig": {"tools": [WEATHER]}}
    )
    assert answer.stop_reason == "tool_use"
    assert [b.kind for b in answer.blocks] == ["tool"]
    call = answer.blocks[0]
    assert call.name == "get_weather" and call.tool_use_id.startswith("tooluse_")
    assert call.input == {"city": "city-1", "unit": "celsius", "days": 1, "detailed": True, "hours": [1.5]}
    assert json.loads("".join(call.chunks)) == call.input
    assert answer.usage.output_tokens == (len(orjson.dumps(call.input)) + 3) // 4


def test_parallel_tools_with_leading_text() -> None:
    text = "both [[sim: tool=get_weather tool=get_time tokens=3]]"
    answer = plan({"messages": [user(text)], "toolConfig": {"tools": [WEATHER, TIME]}})
    assert [(b.kind, b.name) for b in answer.blocks] == [
        ("text", ""),
        ("tool", "get_weather"),
        ("tool", "get_time"),
    ]
    assert len(answer.chunks) == 3
    assert len({b.tool_use_id for b in answer.blocks[1:]}) == 2
    assert parse_directives(text).tools == ("get_weather", "get_time")


@pytest.mark.parametrize(
    ("choice", "name"),
    [pytest.param({"any": {}}, "get_weather", id="any-first-tool"),
     pytest.param({"tool": {"name": "get_time"}}, "get_time", id="named")],
)  # fmt: skip
def test_forced_tool_choice_calls_without_directive(choice: dict[str, Any], name: str) -> None:
    answer = plan({"messages": [user("hi")], "toolConfig": {"tools": [WEATHER, TIME], "toolChoice": choice}})
    assert [b.name for b in answer.blocks] == [name]


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        pytest.param({"messages": [user("x [[sim: tool=nope]]")], "toolConfig": {"tools": [WEATHER]}},
                     "not in the request", id="unknown-tool"),
        pytest.param({"messages": [user("q"), assistant({"toolUse": {"toolUseId": "t1", "name": "f",
                                                                     "input": {}}}),
                                   user({"toolResult": {"toolUseId": "t1", "content": [{"text": "r"}]}})]},
                     "toolConfig field must be defined", id="tool-history-without-tool-config"),
        pytest.param({"messages": [user("q"), assistant({"text": "no call"}),
                                   user({"toolResult": {"toolUseId": "t9", "content": [{"text": "r"}]}})],
                      "toolConfig": {"tools": [WEATHER]}}, "not a toolUse", id="result-without-use"),
        pytest.param({"messages": [user({"image": {"format": "bmp", "source": {"bytes": PNG}}})]}, "format",
                     id="image-format"),
        pytest.param({"messages": [user({"image": {"format": "png", "source": {"bytes": "%%%"}}})]}, "base64",
                     id="image-bytes"),
    ],
)  # fmt: skip
def test_tool_and_image_validation(request_body: dict[str, Any], message: str) -> None:
    with pytest.raises(SimulatedError) as caught:
        plan(request_body)
    assert caught.value.name == "ValidationException"
    assert message in caught.value.message


def test_images_count_as_input_tokens() -> None:
    plain = plan({"messages": [user("look")]})
    with_image = plan({"messages": [user("look", {"image": {"format": "png", "source": {"bytes": PNG}}})]})
    assert with_image.usage.input_tokens == plain.usage.input_tokens + 256


# --- reasoning -----------------------------------------------------------------------------


def test_thinking_adds_a_signed_reasoning_block() -> None:
    answer = plan(
        {"messages": [user("why? [[sim: reasoning_tokens=5]]")], "additionalModelRequestFields": THINKING}
    )
    kinds = [b.kind for b in answer.blocks]
    assert kinds == ["reasoning", "text"]
    reasoning = answer.blocks[0]
    assert reasoning.text.startswith("Thinking about: why?") and len(reasoning.chunks) == 5
    assert reasoning.signature == signature_for(reasoning.text)
    assert answer.usage.output_tokens == 5 + 6


def test_redacted_directive_and_round_trip() -> None:
    first = plan(
        {
            "messages": [user("go [[sim: redacted tool=get_weather]]")],
            "additionalModelRequestFields": THINKING,
            "toolConfig": {"tools": [WEATHER]},
        }
    )
    assert [b.kind for b in first.blocks] == ["redacted", "reasoning", "tool"]
    history = [
        user("go [[sim: redacted tool=get_weather]]"),
        assistant(*(b.converse() for b in first.blocks)),
        user({"toolResult": {"toolUseId": first.blocks[2].tool_use_id, "content": [{"text": "18C"}]}}),
    ]
    second = plan(
        {"messages": history, "additionalModelRequestFields": THINKING, "toolConfig": {"tools": [WEATHER]}}
    )
    assert second.stop_reason == "end_turn"


def tampered(block: dict[str, Any]) -> dict[str, Any]:
    return {"reasoningContent": {"reasoningText": {"text": "edited", "signature": signature_for("original")}}}


@pytest.mark.parametrize(
    ("first_block", "message"),
    [
        pytest.param({"reasoningContent": {"reasoningText": {"text": "t", "signature": "forged"}}},
                     "bound to a different conversation", id="bad-signature"),
        pytest.param({"reasoningContent": {"redactedContent": base64.b64encode(b"other").decode()}},
                     "not produced for this conversation", id="foreign-redacted"),
        pytest.param({"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {}}},
                     "must start with a thinking block", id="thinking-dropped"),
    ],
)  # fmt: skip
def test_thinking_history_is_checked(first_block: dict[str, Any], message: str) -> None:
    call = {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {}}}
    blocks = [first_block] if "toolUse" in first_block else [first_block, call]
    history = [
        user("q"),
        assistant(*blocks),
        user({"toolResult": {"toolUseId": "t1", "content": [{"text": "r"}]}}),
    ]
    with pytest.raises(SimulatedError) as caught:
        plan(
            {
                "messages": history,
                "additionalModelRequestFields": THINKING,
                "toolConfig": {"tools": [WEATHER]},
            }
        )
    assert message in caught.value.message


def test_thinking_refuses_forced_tool_choice() -> None:
    with pytest.raises(SimulatedError, match="forces tool use"):
        plan(
            {
                "messages": [user("q")],
                "additionalModelRequestFields": THINKING,
                "toolConfig": {"tools": [WEATHER], "toolChoice": {"any": {}}},
            }
        )


def test_redacted_data_is_recognised() -> None:
    assert base64.b64decode(redacted_data("x")).startswith(b"brproxy-simulator-redacted:")


# --- cache points --------------------------------------------------------------------------


def test_cache_point_writes_then_reads_the_prefix() -> None:
    cache = PromptCache()
    request = {
        "system": [{"text": "s" * 400}, {"cachePoint": {"type": "default"}}],
        "messages": [user("question")],
    }
    first = plan(request, cache)
    second = plan(request, cache)
    assert first.usage.cache_write_tokens == 103 and first.usage.cache_read_tokens == 0
    assert second.usage.cache_read_tokens == 103 and second.usage.cache_write_tokens == 0
    assert first.usage.input_tokens == second.usage.input_tokens == plan(request).usage.input_tokens - 103
    assert second.usage.as_dict()["cacheReadInputTokens"] == 103
    # A different prefix is a new cache entry.
    other = {**request, "system": [{"text": "t" * 400}, {"cachePoint": {"type": "default"}}]}
    assert plan(other, cache).usage.cache_write_tokens == 103
    assert "cacheReadInputTokens" not in plan({"messages": [user("q")]}, cache).usage.as_dict()


def test_cache_point_in_tools_and_messages_uses_the_last_one() -> None:
    cache = PromptCache()
    request = {
        "toolConfig": {"tools": [WEATHER, {"cachePoint": {"type": "default"}}]},
        "messages": [user("a" * 40, {"cachePoint": {"type": "default"}}, "tail")],
    }
    answer = plan(request, cache)
    tool_tokens = (len(orjson.dumps(WEATHER)) + 3) // 4
    assert answer.usage.cache_write_tokens == tool_tokens + 3 + 10


def test_prompt_cache_is_bounded() -> None:
    cache = PromptCache(capacity=2)
    assert not cache.seen_before(b"a") and not cache.seen_before(b"b") and cache.seen_before(b"a")
    assert not cache.seen_before(b"c")  # evicts b, the least recently used
    assert not cache.seen_before(b"b")


# --- Anthropic bodies ----------------------------------------------------------------------

IMAGE_BLOCK = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
BASE = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100}


def test_anthropic_body_becomes_converse() -> None:
    body = {
        **BASE,
        "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": [IMAGE_BLOCK]},
        ],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f"},
        "stop_sequences": ["X"],
        "temperature": 0,
        "anthropic_beta": ["interleaved-thinking-2025-05-14"],
    }  # fmt: skip
    assert to_converse(body) == {
        "system": [{"text": "sys"}, {"cachePoint": {"type": "default"}}],
        "messages": [
            {
                "role": "user",
                "content": [{"text": "a"}, {"image": {"format": "png", "source": {"bytes": PNG}}}],
            }
        ],
        "inferenceConfig": {"maxTokens": 100, "stopSequences": ["X"], "temperature": 0},
        "toolConfig": {
            "tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}],
            "toolChoice": {"tool": {"name": "f"}},
        },
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({**BASE, "model": "claude", "messages": [{"role": "user", "content": "a"}]},
                     "extraneous key [model]", id="model-key"),
        pytest.param({**BASE, "stream": True, "messages": [{"role": "user", "content": "a"}]},
                     "extraneous key [stream]", id="stream-key"),
        pytest.param({"max_tokens": 5, "messages": [{"role": "user", "content": "a"}]}, "anthropic_version",
                     id="no-version"),
        pytest.param({**BASE, "anthropic_beta": ["claude-code-20250219"], "messages": [{"role": "user",
                                                                                     "content": "a"}]},
                     "invalid beta flag", id="unknown-beta"),
        pytest.param({"anthropic_version": "bedrock-2023-05-31",
                      "messages": [{"role": "user", "content": "a"}]}, "max_tokens", id="no-max-tokens"),
        pytest.param({**BASE, "thinking": {"type": "enabled", "budget_tokens": 500},
                      "messages": [{"role": "user", "content": "a"}]}, "budget_tokens", id="small-budget"),
        pytest.param({**BASE, "thinking": {"type": "enabled", "budget_tokens": 2000},
                      "messages": [{"role": "user", "content": "a"}]}, "greater than", id="budget-over-max"),
        pytest.param({**BASE, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://x"}}]}]}, "base64", id="url-image"),
    ],
)  # fmt: skip
def test_anthropic_body_validation(body: dict[str, Any], message: str) -> None:
    with pytest.raises(SimulatedError) as caught:
        to_converse(body)
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("model_id", "name"),
    [
        pytest.param("us.anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku-20240307", id="profile"),
        pytest.param("anthropic.claude-opus-4-8", "claude-opus-4-8", id="undated"),
        pytest.param("anthropic.claude-opus-4-6-v1", "claude-opus-4-6", id="v1-without-colon"),
    ],
)
def test_anthropic_model_name(model_id: str, name: str) -> None:
    assert anthropic_model_name(model_id) == name


# --- embeddings ----------------------------------------------------------------------------


def test_titan_embedding_is_deterministic_and_unit_length() -> None:
    first, tokens = embed("amazon.titan-embed-text-v2:0", {"inputText": "hello world", "dimensions": 256})
    again, _ = embed("amazon.titan-embed-text-v2:0", {"inputText": "hello world", "dimensions": 256})
    assert first == again and tokens == 3 == first["inputTextTokenCount"]
    assert len(first["embedding"]) == 256
    assert abs(sum(v * v for v in first["embedding"]) - 1) < 1e-3


def test_cohere_embedding_batch_and_types() -> None:
    body = {"texts": ["a", "bb"], "input_type": "search_document"}
    plain, tokens = embed("cohere.embed-english-v3", body)
    assert plain["response_type"] == "embeddings_floats" and len(plain["embeddings"]) == 2
    assert len(plain["embeddings"][0]) == 1024 and tokens == 2
    typed, _ = embed("cohere.embed-english-v3", {**body, "embedding_types": ["float"]})
    assert typed["embeddings"]["float"] == plain["embeddings"]
    v4, _ = embed("cohere.embed-v4:0", {**body, "output_dimension": 256})
    assert len(v4["embeddings"][0]) == 256


@pytest.mark.parametrize(
    ("model_id", "body"),
    [
        pytest.param("amazon.titan-embed-text-v2:0", {"inputText": "x", "dimensions": 300}, id="titan-dims"),
        pytest.param("amazon.titan-embed-text-v2:0", {"texts": ["x"]}, id="titan-no-input"),
        pytest.param("cohere.embed-english-v3", {"texts": ["x"]}, id="cohere-no-input-type"),
        pytest.param("cohere.embed-english-v3", {"texts": ["x"], "input_type": "search_query",
                                                 "output_dimension": 256}, id="cohere-v3-dims"),
        pytest.param("cohere.embed-english-v3", {"texts": ["x"] * 97, "input_type": "search_query"},
                     id="cohere-too-many"),
    ],
)  # fmt: skip
def test_embedding_validation(model_id: str, body: dict[str, Any]) -> None:
    with pytest.raises(SimulatedError):
        embed(model_id, body)


# --- over the wire, with boto3 -------------------------------------------------------------

CLAUDE = "us.anthropic.claude-3-7-sonnet-20250219-v1:0"


@pytest.fixture(scope="module")
def bedrock(simulator: str) -> Any:
    client = boto3_client(simulator)
    yield client
    client.close()


def anthropic_body(text: str, **extra: Any) -> bytes:
    return orjson.dumps({**BASE, "messages": [{"role": "user", "content": text}], **extra})


def test_invoke_model_answers_an_anthropic_message(bedrock: Any) -> None:
    response = bedrock.invoke_model(modelId=CLAUDE, body=anthropic_body("hi [[sim: tokens=4]]"))
    message = orjson.loads(response["body"].read())
    assert message["type"] == "message" and message["id"].startswith("msg_bdrk_")
    assert message["model"] == "claude-3-7-sonnet-20250219"
    assert message["content"][0]["text"] == "Simulated answer to: hi."
    assert message["stop_reason"] == "end_turn" and message["stop_sequence"] is None
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert int(headers["x-amzn-bedrock-output-token-count"]) == message["usage"]["output_tokens"] == 4
    assert int(headers["x-amzn-bedrock-input-token-count"]) == message["usage"]["input_tokens"]


def decode_chunks(stream: Any) -> list[dict[str, Any]]:
    with closing(stream):
        # botocore has already decoded the base64 blob of each chunk.
        return [orjson.loads(event["chunk"]["bytes"]) for event in stream]


def test_invoke_stream_sends_anthropic_events_with_metrics(bedrock: Any) -> None:
    body = anthropic_body(
        "go [[sim: tool=f tokens=2]]",
        tools=[{"name": "f", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}],
        thinking={"type": "enabled", "budget_tokens": 1024},
        max_tokens=2000,
    )
    response = bedrock.invoke_model_with_response_stream(modelId=CLAUDE, body=body)
    events = decode_chunks(response["body"])
    types = [e["type"] for e in events]
    assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
    starts = [e["content_block"]["type"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use"]
    deltas = [e["delta"]["type"] for e in events if e["type"] == "content_block_delta"]
    assert "signature_delta" in deltas and "input_json_delta" in deltas
    partial = "".join(
        e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta" and e["index"] == 2
    )
    assert json.loads(partial) == {"q": "q-1"}
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    metrics = events[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["outputTokenCount"] == events[-2]["usage"]["output_tokens"]
    assert metrics["inputTokenCount"] == events[0]["message"]["usage"]["input_tokens"]


def test_invoke_stream_fails_mid_way(bedrock: Any) -> None:
    body = anthropic_body("fail [[sim: tokens=6 stream_error=throttlingException after=2]]")
    response = bedrock.invoke_model_with_response_stream(modelId=CLAUDE, body=body)
    received: list[dict[str, Any]] = []
    with pytest.raises(EventStreamError) as caught, closing(response["body"]) as stream:
        for event in stream:
            received.append(orjson.loads(event["chunk"]["bytes"]))
    assert caught.value.response["Error"]["Code"] == "throttlingException"
    assert [e["type"] for e in received].count("content_block_delta") == 2
    assert received[-1]["type"] == "content_block_delta"


def test_invoke_errors(bedrock: Any) -> None:
    with pytest.raises(ClientError) as caught:
        bedrock.invoke_model(
            modelId=CLAUDE, body=anthropic_body("x", anthropic_beta=["claude-code-20250219"])
        )
    assert caught.value.response["Error"]["Message"] == "invalid beta flag"
    with pytest.raises(ClientError) as caught:
        bedrock.invoke_model_with_response_stream(
            modelId=CLAUDE, body=anthropic_body("x [[sim: error=ThrottlingException]]")
        )
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    with pytest.raises(ClientError) as caught:
        bedrock.invoke_model(modelId="amazon.nova-pro-v1:0", body=b"{}")
    assert caught.value.response["Error"]["Code"] == "UnknownOperationException"


def test_invoke_embeddings(bedrock: Any) -> None:
    response = bedrock.invoke_model(
        modelId="amazon.titan-embed-text-v2:0", body=orjson.dumps({"inputText": "hello", "dimensions": 512})
    )
    payload = orjson.loads(response["body"].read())
    assert len(payload["embedding"]) == 512
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"] == "2"


def test_count_tokens(bedrock: Any) -> None:
    body = anthropic_body("count me please")
    counted = bedrock.count_tokens(
        modelId="anthropic.claude-3-7-sonnet-20250219-v1:0", input={"invokeModel": {"body": body}}
    )
    answered = orjson.loads(bedrock.invoke_model(modelId=CLAUDE, body=body)["body"].read())
    assert counted["inputTokens"] == answered["usage"]["input_tokens"]
    converse_count = bedrock.count_tokens(
        modelId="anthropic.claude-3-7-sonnet-20250219-v1:0",
        input={"converse": {"messages": [{"role": "user", "content": [{"text": "count me please"}]}]}},
    )
    assert converse_count["inputTokens"] == counted["inputTokens"]
    with pytest.raises(ClientError) as caught:
        bedrock.count_tokens(modelId=CLAUDE, input={"invokeModel": {"body": body}})
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_converse_stream_tools_and_reasoning(bedrock: Any) -> None:
    response = bedrock.converse_stream(
        modelId=CLAUDE,
        messages=[{"role": "user", "content": [{"text": "go [[sim: tool=get_weather]]"}]}],
        toolConfig={"tools": [WEATHER]},
        additionalModelRequestFields=THINKING,
    )
    with closing(response["stream"]) as stream:
        events = list(stream)
    names = [next(iter(e)) for e in events]
    assert names[0] == "messageStart" and names[-2:] == ["messageStop", "metadata"]
    start = next(e["contentBlockStart"] for e in events if "contentBlockStart" in e)
    assert start["contentBlockIndex"] == 1 and start["start"]["toolUse"]["name"] == "get_weather"
    reasoning = [e["contentBlockDelta"]["delta"]["reasoningContent"] for e in events
                 if "reasoningContent" in e.get("contentBlockDelta", {}).get("delta", {})]  # fmt: skip
    text = "".join(r.get("text", "") for r in reasoning)
    assert reasoning[-1] == {"signature": signature_for(text)}
    assert events[-2]["messageStop"]["stopReason"] == "tool_use"


@pytest.mark.parametrize(
    ("fault", "failure"),
    [
        pytest.param("corrupt_after", ChecksumMismatch, id="wrong-checksum"),
        pytest.param("disconnect_after", ProtocolError, id="connection-dropped"),
    ],
)
def test_a_stream_broken_in_transit_fails_botocore_after_the_frames_before_it(
    bedrock: Any, fault: str, failure: type[Exception]
) -> None:
    body = anthropic_body(f"break [[sim: tokens=6 {fault}=2]]")
    response = bedrock.invoke_model_with_response_stream(modelId=CLAUDE, body=body)
    received: list[dict[str, Any]] = []
    with pytest.raises(failure), closing(response["body"]) as stream:
        for event in stream:
            received.append(orjson.loads(event["chunk"]["bytes"]))
    assert [e["type"] for e in received].count("content_block_delta") == 2
    assert "message_stop" not in [e["type"] for e in received]
