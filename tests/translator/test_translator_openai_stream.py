"""ConverseStream events → OpenAI `chat.completion.chunk` SSE frames, byte for byte.

The event sequences are in `tests/fixtures/converse_stream/<case>.json` (`{"events": [[event
type, payload], ...]}`), written in the shapes Bedrock's ConverseStream documents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from translator.openai_bedrock import ChatCompletionStream

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "converse_stream"
CREATED = 1_700_000_000
ID = "chatcmpl-0123456789abcdef"
MODEL = "claude-3-5-sonnet"


def events(case: str) -> list[tuple[str, dict[str, Any]]]:
    data = json.loads((FIXTURES / f"{case}.json").read_text("utf-8"))
    return [(kind, payload) for kind, payload in data["events"]]


def frame(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
    chunk = {
        "id": ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": choices,
        "usage": usage,
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def delta(d: dict[str, Any], finish: str | None = None) -> bytes:
    return frame([{"index": 0, "delta": d, "finish_reason": finish, "logprobs": None}])


def text(t: str) -> bytes:
    return delta({"content": t})


def tool_start(index: int, call_id: str, name: str) -> bytes:
    call = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
    return delta({"tool_calls": [call]})


def tool_args(index: int, arguments: str) -> bytes:
    return delta({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]})


def usage(prompt: int, completion: int, cached: int = 0) -> bytes:
    return frame(
        [],
        {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    )


FIRST = delta({"role": "assistant", "content": ""})
DONE = b"data: [DONE]\n\n"

CASES = [
    pytest.param(
        "text",
        False,
        [FIRST, text("Hello"), text(", world"), text("!"), delta({}, "stop"), DONE],
        "Hello, world!",
        "end_turn",
        (12, 4, 0, 0),
        321,
        id="text",
    ),
    pytest.param(
        "text",
        True,
        [FIRST, text("Hello"), text(", world"), text("!"), delta({}, "stop"), usage(12, 4), DONE],
        "Hello, world!",
        "end_turn",
        (12, 4, 0, 0),
        321,
        id="text-include-usage",
    ),
    pytest.param(
        "text_then_two_tools",
        True,
        [
            FIRST,
            text("Let me check both."),
            tool_start(0, "tooluse_paris", "get_weather"),
            tool_args(0, '{"city":'),
            tool_args(0, '"Paris"}'),
            tool_start(1, "tooluse_london", "get_weather"),
            tool_args(1, '{"ci'),
            tool_args(1, 'ty":"London"}'),
            delta({}, "tool_calls"),
            usage(350 + 100 + 20, 80, cached=100),
            DONE,
        ],
        "Let me check both.",
        "tool_use",
        (350, 80, 100, 20),
        1200,
        id="text-then-two-parallel-tools",
    ),
    pytest.param(
        "text_then_two_tools",
        False,
        [
            FIRST,
            text("Let me check both."),
            tool_start(0, "tooluse_paris", "get_weather"),
            tool_args(0, '{"city":'),
            tool_args(0, '"Paris"}'),
            tool_start(1, "tooluse_london", "get_weather"),
            tool_args(1, '{"ci'),
            tool_args(1, 'ty":"London"}'),
            delta({}, "tool_calls"),
            DONE,
        ],
        "Let me check both.",
        "tool_use",
        (350, 80, 100, 20),
        1200,
        id="two-tools-without-usage-frame",
    ),
    pytest.param(
        "tools_only_interleaved",
        False,
        [
            FIRST,
            tool_start(0, "t0", "get_time"),
            tool_start(1, "t1", "get_weather"),
            tool_args(1, '{"city":"Oslo"}'),
            tool_args(0, "{}"),
            delta({}, "tool_calls"),
            DONE,
        ],
        "",
        "tool_use",
        (20, 30, 0, 0),
        321,
        id="interleaved-tool-deltas-keep-their-index",
    ),
    pytest.param(
        "reasoning",
        True,
        [
            FIRST,
            delta({"reasoning_content": "Let me think"}),
            delta({"reasoning_content": " carefully."}),
            # The signed block, whole, for the client to send back with its next turn.
            delta(
                {
                    "thinking_blocks": [
                        {
                            "type": "thinking",
                            "thinking": "Let me think carefully.",
                            "signature": "EqQBCkYIBRgCKkA",
                        }
                    ]
                }
            ),
            text("42"),
            delta({}, "stop"),
            usage(30, 60),
            DONE,
        ],
        "42",
        "end_turn",
        (30, 60, 0, 0),
        321,
        id="reasoning-with-signed-thinking-block",
    ),
    pytest.param(
        "max_tokens",
        False,
        [FIRST, text("Once upon a"), delta({}, "length"), DONE],
        "Once upon a",
        "max_tokens",
        (5, 3, 0, 0),
        90,
        id="max-tokens-is-length",
    ),
]


@pytest.mark.parametrize(
    ("case", "include_usage", "frames", "completion", "stop", "tokens", "latency"), CASES
)
def test_stream_frames(
    case: str,
    include_usage: bool,
    frames: list[bytes],
    completion: str,
    stop: str,
    tokens: tuple[int, int, int, int],
    latency: int,
) -> None:
    stream = ChatCompletionStream(ID, MODEL, include_usage, created=CREATED)
    produced = [stream.first_frame()]
    for kind, payload in events(case):
        produced.extend(stream.on_event(kind, payload))
    produced.append(stream.done_frame())
    assert produced == frames
    for one in produced:
        assert one.startswith(b"data: ")
        assert one.endswith(b"\n\n")
        assert b"\n" not in one[:-2]
    assert stream.completion == completion
    assert stream.stop_reason == stop
    got = stream.usage
    assert (got.input, got.output, got.cache_read, got.cache_write) == tokens
    assert got.reported is True
    assert stream.latency_ms == latency


def test_usage_frame_comes_after_finish_and_before_done() -> None:
    stream = ChatCompletionStream(ID, MODEL, True, created=CREATED)
    chunks = [stream.first_frame()]
    for kind, payload in events("text"):
        chunks.extend(stream.on_event(kind, payload))
    chunks.append(stream.done_frame())
    parsed = [orjson.loads(c[6:]) for c in chunks[:-1]]
    assert parsed[-1]["choices"] == []
    assert parsed[-1]["usage"]["total_tokens"] == 16
    assert parsed[-2]["choices"][0]["finish_reason"] == "stop"
    assert all(p["usage"] is None for p in parsed[:-1])
    assert {p["id"] for p in parsed} == {ID}
    assert {p["created"] for p in parsed} == {CREATED}


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        pytest.param("messageStart", {"role": "assistant"}, id="message-start"),
        pytest.param("contentBlockStop", {"contentBlockIndex": 0}, id="block-stop"),
        pytest.param("contentBlockStart", {"contentBlockIndex": 0, "start": {}}, id="non-tool-block-start"),
        pytest.param("contentBlockDelta", {"contentBlockIndex": 0, "delta": {}}, id="empty-delta"),
        pytest.param(
            "contentBlockDelta",
            {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": ""}}},
            id="empty-reasoning",
        ),
        pytest.param("somethingNew", {"x": 1}, id="unknown-event"),
    ],
)
def test_events_without_frames(kind: str, payload: dict[str, Any]) -> None:
    stream = ChatCompletionStream(ID, MODEL, True, created=CREATED)
    assert stream.on_event(kind, payload) == []


def test_metadata_without_include_usage_still_records_usage() -> None:
    stream = ChatCompletionStream(ID, MODEL, False, created=CREATED)
    assert stream.on_event("metadata", {"usage": {"inputTokens": 1, "outputTokens": 2}}) == []
    assert stream.usage.reported is True
    assert stream.latency_ms is None


def test_usage_not_reported_until_metadata() -> None:
    stream = ChatCompletionStream(ID, MODEL, True, created=CREATED)
    stream.on_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "partial"}})
    assert stream.usage.reported is False
    assert stream.completion == "partial"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ("boom",),
            b'data: {"error":{"message":"boom","type":"server_error","param":null,"code":null}}\n\n',
            id="default",
        ),
        pytest.param(
            ("Bedrock: throttled", "server_error", "throttlingException"),
            b'data: {"error":{"message":"Bedrock: throttled","type":"server_error","param":null,'
            b'"code":"throttlingException"}}\n\n',
            id="with-code",
        ),
        pytest.param(
            ('quote " and \n newline',),
            b'data: {"error":{"message":"quote \\" and \\n newline","type":"server_error","param":null,'
            b'"code":null}}\n\n',
            id="escaped-one-line",
        ),
    ],
)
def test_error_frame(args: tuple[str, ...], expected: bytes) -> None:
    assert ChatCompletionStream.error_frame(*args) == expected
    assert b"\n" not in expected[:-2]
