"""The simulator's pure answer planning: text, token counts, stop reasons, directives."""

from __future__ import annotations

from typing import Any

import pytest

from bedrock_simulator.errors import SimulatedError
from bedrock_simulator.responses import Directives, converse, parse_directives, split_tokens


def request(text: str, **inference: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": [{"text": text}]}]}
    if inference:
        body["inferenceConfig"] = inference
    return body


def test_default_answer_echoes_and_counts() -> None:
    answer = converse(request("Hello simulator"), default_output_tokens=16)
    assert answer.text.startswith("Simulated answer to: Hello simulator. The simulator")
    assert len(answer.chunks) == 16
    assert answer.stop_reason == "end_turn"
    # ceil(15 / 4) + 3 per message.
    assert answer.usage.as_dict() == {"inputTokens": 7, "outputTokens": 16, "totalTokens": 23}


def test_chunks_are_whitespace_prefixed_words() -> None:
    answer = converse(request("a b c [[sim: tokens=30]]"), default_output_tokens=16)
    assert answer.chunks[0] == "Simulated"
    assert all(chunk.startswith(" ") and " " not in chunk[1:] for chunk in answer.chunks[1:])
    assert split_tokens(answer.text) == answer.chunks


def test_echo_is_cut_to_forty_characters_without_directives() -> None:
    text = "[[sim: tokens=12]]  This prompt is\nrather long and goes on beyond forty characters"
    answer = converse(request(text), default_output_tokens=16)
    assert answer.text.startswith("Simulated answer to: This prompt is rather long and goes on b.")


def test_input_tokens_cover_system_and_all_messages() -> None:
    body = {
        "system": [{"text": "x" * 10}],
        "messages": [
            {"role": "user", "content": [{"text": "y" * 8}, {"text": "z"}]},
            {"role": "assistant", "content": [{"text": "w" * 4}]},
            {"role": "user", "content": [{"text": "v" * 5}]},
        ],
    }
    answer = converse(body, default_output_tokens=4)
    # system 3 + 3; messages (3 + 2 + 1) + (3 + 1) + (3 + 2)
    assert answer.usage.input_tokens == 6 + 6 + 4 + 5


@pytest.mark.parametrize(
    ("text", "inference", "stop_reason", "outputs"),
    [
        pytest.param("hi [[sim: tokens=10]]", {}, "end_turn", 10, id="tokens-directive"),
        pytest.param("hi [[sim: tokens=10]]", {"maxTokens": 4}, "max_tokens", 4, id="max-tokens-cut"),
        pytest.param("hi [[sim: tokens=10]]", {"maxTokens": 10}, "end_turn", 10, id="max-tokens-equal"),
        pytest.param("hi", {"stopSequences": ["simulator"]}, "stop_sequence", 6, id="stop-sequence"),
        # The stop sequence lies beyond maxTokens: the model never generates it.
        pytest.param(
            "hi", {"stopSequences": ["planned"], "maxTokens": 3}, "max_tokens", 3, id="stop-after-max"
        ),
        pytest.param("hi", {"stopSequences": ["absent", ""]}, "end_turn", 16, id="no-stop-match"),
    ],
)
def test_stop_reasons(text: str, inference: dict[str, Any], stop_reason: str, outputs: int) -> None:
    answer = converse(request(text, **inference), default_output_tokens=16)
    assert answer.stop_reason == stop_reason
    assert answer.usage.output_tokens == outputs == len(answer.chunks)
    for stop in inference.get("stopSequences", []):
        if stop:
            assert stop not in answer.text


def test_stop_sequence_cuts_before_it() -> None:
    answer = converse(request("hi", stopSequences=["simulator"]), default_output_tokens=16)
    assert answer.text == "Simulated answer to: hi. The "


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("no directives", Directives(), id="none"),
        pytest.param("[[sim: tokens=5]]", Directives(tokens=5), id="tokens"),
        pytest.param(
            "[[sim:stream_error=ThrottlingException,after=3 no_usage]]",
            Directives(stream_error="throttlingException", after=3, no_usage=True),
            id="mixed-separators",
        ),
        pytest.param(
            "a [[sim: latency_ms=20]] b [[sim: error=ModelTimeoutException]]",
            Directives(latency_ms=20.0, error="ModelTimeoutException"),
            id="two-blocks",
        ),
        pytest.param("[[sim: tokens=5]] [[sim: tokens=7]]", Directives(tokens=7), id="later-wins"),
    ],
)
def test_parse_directives(text: str, expected: Directives) -> None:
    assert parse_directives(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[[sim: tokenz=5]]", id="unknown-name"),
        pytest.param("[[sim: tokens=0]]", id="zero-tokens"),
        pytest.param("[[sim: tokens=abc]]", id="not-a-number"),
        pytest.param("[[sim: error=NoSuchException]]", id="unknown-error"),
        pytest.param("[[sim: stream_error=ThrottlingExceptionX]]", id="unknown-stream-error"),
        pytest.param("[[sim: no_usage=1]]", id="flag-with-value"),
        pytest.param("[[sim: corrupt_after=-1]]", id="negative-corrupt-after"),
        pytest.param("[[sim: disconnect_after=x]]", id="disconnect-after-not-a-number"),
    ],
)
def test_bad_directives_are_validation_errors(text: str) -> None:
    with pytest.raises(SimulatedError) as caught:
        parse_directives(text)
    assert caught.value.name == "ValidationException"


def test_directives_come_from_last_user_message_only() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"text": "[[sim: error=ThrottlingException]]"}]},
            {"role": "assistant", "content": [{"text": "ok"}]},
            {"role": "user", "content": [{"text": "again [[sim: tokens=3]]"}]},
            {"role": "assistant", "content": [{"text": "prefill"}]},
        ]
    }
    assert converse(body, default_output_tokens=16).usage.output_tokens == 3


def test_error_directive_raises_with_status() -> None:
    with pytest.raises(SimulatedError) as caught:
        converse(request("[[sim: error=ModelErrorException]]"), default_output_tokens=16)
    assert (caught.value.name, caught.value.status) == ("ModelErrorException", 424)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param([], id="not-an-object"),
        pytest.param({}, id="no-messages"),
        pytest.param({"messages": []}, id="empty-messages"),
        pytest.param(
            {"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}, id="starts-assistant"
        ),
        pytest.param(
            {
                "messages": [
                    {"role": "user", "content": [{"text": "x"}]},
                    {"role": "user", "content": [{"text": "y"}]},
                ]
            },
            id="not-alternating",
        ),
        pytest.param({"messages": [{"role": "user", "content": []}]}, id="empty-content"),
        pytest.param({"messages": [{"role": "system", "content": [{"text": "x"}]}]}, id="bad-role"),
        pytest.param({"messages": [{"role": "user", "content": [{"text": 3}]}]}, id="text-not-string"),
        pytest.param(request("x", maxTokens=0), id="max-tokens-zero"),
        pytest.param(request("x", temperature=3), id="temperature-range"),
        pytest.param(request("x", stopSequences="END"), id="stop-not-list"),
    ],
)
def test_invalid_requests(body: Any) -> None:
    with pytest.raises(SimulatedError) as caught:
        converse(body, default_output_tokens=16)
    assert (caught.value.name, caught.value.status) == ("ValidationException", 400)


def test_tool_calls_count_within_max_tokens() -> None:
    """A model stops at its ceiling, tool calls included: they are output tokens too."""
    tool = {
        "toolSpec": {
            "name": "lookup",
            "inputSchema": {"json": {"type": "object", "properties": {"q": {"type": "string"}}}},
        }
    }
    body = {**request("go [[sim: tool=lookup]]", maxTokens=1), "toolConfig": {"tools": [tool]}}
    answer = converse(body, default_output_tokens=16)
    assert answer.stop_reason == "max_tokens"
    assert answer.usage.output_tokens <= 1
    roomy = converse({**body, "inferenceConfig": {"maxTokens": 100}}, default_output_tokens=16)
    assert roomy.stop_reason == "tool_use" and 0 < roomy.usage.output_tokens <= 100


def test_a_prompt_longer_than_the_context_window_is_refused() -> None:
    with pytest.raises(SimulatedError) as refused:
        converse(request("x" * 4000), default_output_tokens=1, context_window=500)
    assert refused.value.name == "ValidationException"
    assert "prompt is too long" in refused.value.message
    assert converse(request("x" * 400), default_output_tokens=1, context_window=500).usage.input_tokens < 500
