"""OpenAI Chat Completions request → Bedrock Converse request, table-driven over fixtures.

Each `tests/fixtures/openai_converse/<case>.json` holds `{"openai": <request body>, "converse":
<the Converse body BRProxy must send>}`.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from translator.openai_bedrock import MAX_IMAGE_BYTES, InvalidRequest, OpenAIChatRequest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "openai_converse"


def load_cases() -> list[Any]:
    cases = []
    for path in sorted(FIXTURES.glob("*.json")):
        case = json.loads(path.read_text("utf-8"))
        cases.append(pytest.param(case["openai"], case["converse"], id=path.stem))
    return cases


CASES = load_cases()


def test_fixtures_are_present() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize(("openai", "converse"), CASES)
def test_to_converse(openai: dict[str, Any], converse: dict[str, Any]) -> None:
    request = OpenAIChatRequest.parse(orjson.dumps(openai))
    assert request.to_converse() == converse
    # and the body really is JSON BRProxy can send as is
    assert orjson.loads(orjson.dumps(request.to_converse())) == converse


def test_to_converse_keeps_integer_zero_temperature() -> None:
    raw = b'{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":0,"top_p":0.0}'
    config = OpenAIChatRequest.parse(raw).to_converse()["inferenceConfig"]
    assert config == {"maxTokens": 4096, "temperature": 0, "topP": 0.0}
    assert orjson.dumps(config) == b'{"maxTokens":4096,"temperature":0,"topP":0.0}'


def test_brclient_penalties_are_accepted_and_not_forwarded() -> None:
    case = json.loads((FIXTURES / "brclient_body.json").read_text("utf-8"))
    assert {"presence_penalty", "frequency_penalty"} <= set(case["openai"])
    body = orjson.dumps(OpenAIChatRequest.parse(orjson.dumps(case["openai"])).to_converse())
    assert b"penalty" not in body


@pytest.mark.parametrize(
    ("body", "attributes"),
    [
        pytest.param(
            {},
            {"model": "claude-3-haiku", "stream": False, "include_usage": False, "user": None},
            id="defaults",
        ),
        pytest.param({"stream": True}, {"stream": True, "include_usage": False}, id="stream"),
        pytest.param({"stream": None}, {"stream": False}, id="stream-null"),
        pytest.param(
            {"stream": True, "stream_options": {"include_usage": True}},
            {"stream": True, "include_usage": True},
            id="include-usage",
        ),
        pytest.param({"stream_options": None}, {"include_usage": False}, id="stream-options-null"),
        pytest.param({"user": "end-user-1"}, {"user": "end-user-1"}, id="user"),
        pytest.param({"user": 42}, {"user": None}, id="non-string-user-dropped"),
        pytest.param({"n": 1}, {"model": "claude-3-haiku"}, id="n-one"),
        pytest.param({"logprobs": False, "top_logprobs": 0}, {"model": "claude-3-haiku"}, id="logprobs-off"),
    ],
)
def test_parse_attributes(body: dict[str, Any], attributes: dict[str, Any]) -> None:
    full = {"model": "claude-3-haiku", "messages": [{"role": "user", "content": "Hi"}], **body}
    request = OpenAIChatRequest.parse(orjson.dumps(full))
    for name, value in attributes.items():
        assert getattr(request, name) == value
    assert request.body == full


# --- errors ---------------------------------------------------------------------------------

PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def body(**fields: Any) -> bytes:
    base: dict[str, Any] = {"model": "claude-3-haiku", "messages": [{"role": "user", "content": "Hi"}]}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not _DROP})


_DROP = object()


def image_message(url: Any) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": url}],
        }
    ]


def data_uri(raw: bytes, mime: str = "image/png") -> dict[str, str]:
    return {"url": f"data:{mime};base64,{base64.b64encode(raw).decode()}"}


IMG = "messages[0].content[1].image_url.url"
TOOLS = [{"type": "function", "function": {"name": "f"}}]

ERRORS = [
    pytest.param(b"{", None, "not valid JSON", id="invalid-json"),
    pytest.param(b"", None, "not valid JSON", id="empty-body"),
    pytest.param(b"[]", "body", "JSON object", id="not-an-object"),
    pytest.param(body(model=_DROP), "model", "model is required", id="missing-model"),
    pytest.param(body(model=""), "model", "model is required", id="empty-model"),
    pytest.param(body(model=7), "model", "model is required", id="numeric-model"),
    pytest.param(body(messages=_DROP), "messages", "non-empty list", id="missing-messages"),
    pytest.param(body(messages=[]), "messages", "non-empty list", id="empty-messages"),
    pytest.param(body(messages="Hi"), "messages", "non-empty list", id="messages-not-a-list"),
    pytest.param(body(n=2), "n", "n > 1", id="n-2"),
    pytest.param(body(logprobs=True), "logprobs", "logprobs", id="logprobs"),
    pytest.param(body(top_logprobs=3), "top_logprobs", "top_logprobs", id="top-logprobs"),
    pytest.param(body(stream="yes"), "stream", "boolean", id="stream-not-bool"),
    pytest.param(body(stream_options=[1]), "stream_options", "object", id="stream-options-not-object"),
    pytest.param(
        body(messages=image_message({"url": "http://169.254.169.254/latest/meta-data"})),
        IMG,
        "not fetched",
        id="http-image-url",
    ),
    pytest.param(
        body(messages=image_message({"url": "https://example.com/cat.png"})),
        IMG,
        "not fetched",
        id="https-image-url",
    ),
    pytest.param(
        body(messages=image_message("https://example.com/cat.png")),
        IMG,
        "not fetched",
        id="https-image-url-plain-string",
    ),
    pytest.param(
        body(messages=image_message(data_uri(b"\0" * (MAX_IMAGE_BYTES + 1)))),
        IMG,
        "limit",
        id="oversize-image",
    ),
    pytest.param(
        body(messages=image_message({"url": "data:image/png;base64,%%%not-base64%%%"})),
        IMG,
        "not valid base64",
        id="bad-base64",
    ),
    pytest.param(
        body(messages=image_message({"url": "data:image/png;base64,iVBORw0KGgo"})),
        IMG,
        "not valid base64",
        id="truncated-base64-padding",
    ),
    pytest.param(
        body(messages=image_message(data_uri(b"BM", "image/bmp"))),
        IMG,
        "unsupported image type",
        id="unsupported-image-type",
    ),
    pytest.param(
        body(messages=image_message({"url": "data:image/png," + PNG_1PX})),
        IMG,
        "base64 data: URI",
        id="data-uri-not-base64",
    ),
    pytest.param(
        body(messages=image_message({"url": "file:///etc/passwd"})), IMG, "base64 data: URI", id="file-url"
    ),
    pytest.param(body(messages=image_message({"url": None})), IMG, "must be a string", id="image-url-null"),
    pytest.param(
        body(messages=[{"role": "function", "content": "x"}]),
        "messages[0].role",
        "unsupported role",
        id="unsupported-role-function",
    ),
    pytest.param(
        body(messages=[{"content": "x"}]), "messages[0].role", "unsupported role", id="missing-role"
    ),
    pytest.param(body(messages=["Hi"]), "messages[0]", "must be an object", id="message-not-object"),
    pytest.param(
        body(messages=[{"role": "user", "content": ""}]),
        "messages[0].content",
        "must not be empty",
        id="empty-user-content",
    ),
    pytest.param(
        body(messages=[{"role": "user", "content": " \n\t"}]),
        "messages[0].content",
        "must not be empty",
        id="blank-user-content",
    ),
    pytest.param(
        body(messages=[{"role": "user", "content": []}]),
        "messages[0].content",
        "non-empty",
        id="empty-user-parts",
    ),
    pytest.param(
        body(messages=[{"role": "user", "content": [{"type": "text", "text": "  "}]}]),
        "messages[0].content",
        "must not be empty",
        id="only-blank-text-parts",
    ),
    pytest.param(
        body(messages=[{"role": "user", "content": None}]),
        "messages[0].content",
        "non-empty",
        id="null-user-content",
    ),
    pytest.param(
        body(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
        "messages[0].content[0].type",
        "unsupported content part",
        id="audio-part",
    ),
    pytest.param(
        body(messages=[{"role": "user", "content": ["Hi"]}]),
        "messages[0].content[0]",
        "must be an object",
        id="part-not-object",
    ),
    pytest.param(
        body(messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]),
        "messages[0].content[0].text",
        "text must be a string",
        id="text-not-string",
    ),
    pytest.param(
        body(
            messages=[
                {"role": "system", "content": [{"type": "image_url", "image_url": "x"}]},
                {"role": "user", "content": "Hi"},
            ]
        ),
        "messages[0].content[0]",
        "only text parts",
        id="image-in-system",
    ),
    pytest.param(
        body(messages=[{"role": "system", "content": 5}, {"role": "user", "content": "Hi"}]),
        "messages[0].content",
        "string or a list",
        id="system-content-number",
    ),
    pytest.param(
        body(messages=[{"role": "system", "content": "Be nice."}]),
        "messages",
        "at least one user",
        id="only-system",
    ),
    pytest.param(
        body(messages=[{"role": "user", "content": "Hi"}, {"role": "tool", "content": "x"}]),
        "messages[1].tool_call_id",
        "tool_call_id",
        id="tool-without-id",
    ),
    pytest.param(
        body(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None}]),
        "messages[1].content",
        "content or tool_calls",
        id="empty-assistant",
    ),
    pytest.param(
        body(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "tool_calls": {}}]),
        "messages[1].tool_calls",
        "must be a list",
        id="tool-calls-not-list",
    ),
    pytest.param(
        body(
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]},
            ]
        ),
        "messages[1].tool_calls[0]",
        "needs a function",
        id="tool-call-without-function",
    ),
    pytest.param(
        body(
            messages=[
                {"role": "user", "content": "Hi"},
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}],
                },
            ]
        ),
        "messages[1].tool_calls[0].function.arguments",
        "JSON object",
        id="bad-tool-arguments",
    ),
    pytest.param(body(max_tokens=0), "max_tokens", "positive integer", id="max-tokens-zero"),
    pytest.param(body(max_tokens="100"), "max_tokens", "positive integer", id="max-tokens-string"),
    pytest.param(
        body(max_completion_tokens=-1), "max_tokens", "positive integer", id="max-completion-negative"
    ),
    pytest.param(body(temperature="0.5"), "temperature", "number", id="temperature-string"),
    pytest.param(body(temperature=True), "temperature", "number", id="temperature-bool"),
    pytest.param(body(top_p=[1]), "top_p", "number", id="top-p-list"),
    pytest.param(body(stop=["a", 1]), "stop", "string or a list", id="stop-list-with-number"),
    pytest.param(body(stop=5), "stop", "string or a list", id="stop-number"),
    pytest.param(body(tools={"type": "function"}), "tools", "must be a list", id="tools-not-list"),
    pytest.param(
        body(tools=[{"type": "retrieval"}]), "tools[0]", "only function tools", id="tool-not-function"
    ),
    pytest.param(
        body(tools=[{"type": "function", "function": {"description": "no name"}}]),
        "tools[0]",
        "function.name",
        id="tool-without-name",
    ),
    pytest.param(
        body(tools=TOOLS, tool_choice="any"),
        "tool_choice",
        "tool_choice must be",
        id="tool-choice-unknown-string",
    ),
    pytest.param(
        body(tools=TOOLS, tool_choice={"type": "function"}),
        "tool_choice",
        "tool_choice must be",
        id="tool-choice-object-without-function",
    ),
]


@pytest.mark.parametrize(("raw", "param", "message"), ERRORS)
def test_invalid_requests(raw: bytes, param: str | None, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        OpenAIChatRequest.parse(raw).to_converse()
    assert caught.value.param == param
    assert caught.value.status == 400
    assert message in caught.value.message
    assert str(caught.value) == caught.value.message


def test_image_at_the_size_limit_is_accepted() -> None:
    raw = body(messages=image_message(data_uri(b"\0" * MAX_IMAGE_BYTES)))
    blocks = OpenAIChatRequest.parse(raw).to_converse()["messages"][0]["content"]
    assert blocks[1]["image"]["format"] == "png"
    assert len(base64.b64decode(blocks[1]["image"]["source"]["bytes"])) == MAX_IMAGE_BYTES


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        pytest.param(
            [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c"},
            ],
            "c",
            id="last-user-string",
        ),
        pytest.param(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "x"},
                        {"type": "image_url", "image_url": "data:"},
                        {"type": "text", "text": "y"},
                    ],
                }
            ],
            "xy",
            id="parts-joined",
        ),
        pytest.param(
            [{"role": "user", "content": "q"}, {"role": "tool", "tool_call_id": "t", "content": "r"}],
            "q",
            id="tool-result-is-not-user",
        ),
        pytest.param([{"role": "system", "content": "s"}], "", id="no-user"),
    ],
)
def test_last_user_text(messages: list[dict[str, Any]], expected: str) -> None:
    assert OpenAIChatRequest.parse(body(messages=messages)).last_user_text() == expected


# --- known defects ------------------------------------------------------------------------------

TOOL_HISTORY = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    {"role": "user", "content": "Now just summarise, no more tools."},
]
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def test_tool_choice_none_with_tool_history_keeps_a_tool_config() -> None:
    raw = body(messages=TOOL_HISTORY, tools=[WEATHER_TOOL], tool_choice="none")
    converse = OpenAIChatRequest.parse(raw).to_converse()
    assert any("toolUse" in block for turn in converse["messages"] for block in turn["content"])
    assert "toolConfig" in converse


def test_null_max_completion_tokens_falls_back_to_max_tokens() -> None:
    raw = body(max_tokens=100, max_completion_tokens=None)
    assert OpenAIChatRequest.parse(raw).to_converse()["inferenceConfig"] == {"maxTokens": 100}
