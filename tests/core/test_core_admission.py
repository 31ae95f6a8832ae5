"""What a model call may cost at most, read from its whole body (core/admission.py).

The table holds the bodies that broke the cost bound when authz read a regex over the body's
head: each must now be read the way the translator reads it (orjson: the last duplicate
wins, escapes decoded, position irrelevant).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from core.admission import (
    ANSWER_ROOM,
    DEFAULT_MAX_TOKENS,
    DEFINED_TOOL_TOKENS,
    IMAGE_TOKENS,
    OVERHEAD_TOKENS,
    Admission,
    BodyRefused,
    bound_cost,
    call_bound,
    input_price,
    parse_json_object,
)
from core.catalogue import CATALOGUE, ModelEntry
from core.pricing import MILLION

PROMPT = [{"role": "user", "content": "Hi"}]
PNG_1X1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def bound_of(api: str, raw: bytes) -> tuple[str, int]:
    parsed = parse_json_object(raw)
    bound = call_bound(api, parsed.body, parsed.model, parsed.size)
    return bound.model, bound.output.max_tokens


@pytest.mark.parametrize(
    ("api", "raw", "model", "output"),
    [
        pytest.param(
            "openai.chat",
            b'{"model":"claude-3-5-sonnet","stream":true,"max_tokens":1,'
            b'"messages":[{"role":"user","content":"x"}],"max_tokens":20000}',
            "claude-3-5-sonnet",
            20000,
            id="duplicate-max_tokens-last-wins",
        ),
        pytest.param(
            "anthropic.messages",
            b'{"model":"claude-3-5-sonnet","max_tokens":1,'
            b'"messages":[{"role":"user","content":"x"}],"max_tokens":20000}',
            "claude-3-5-sonnet",
            20000,
            id="anthropic-duplicate-max_tokens",
        ),
        pytest.param(
            "openai.chat",
            b'{"model":"m","max_tokens":1,"max_completion_tokens":8192,"messages":[]}',
            "m",
            8192,
            id="max_completion_tokens-wins-over-max_tokens",
        ),
        pytest.param(
            "openai.chat",
            b'{"model":"m","messages":[{"role":"user","content":"x","max_tokens":1}]}',
            "m",
            DEFAULT_MAX_TOKENS,
            id="max_tokens-inside-a-message-is-not-the-ceiling",
        ),
        pytest.param(
            "openai.chat",
            b'{"model":"m","messages":[{"role":"user","content":"x","max_tokens":1}],"max_tokens":9000}',
            "m",
            9000,
            id="nested-max_tokens-beside-the-real-one",
        ),
        pytest.param(
            "openai.chat",
            b'{"model":"claude-3-haiku","messages":[],"model":"claude-3-opus"}',
            "claude-3-opus",
            DEFAULT_MAX_TOKENS,
            id="duplicate-model-last-wins",
        ),
        pytest.param(
            "openai.chat",
            b'{"model":"m","messages":[],"max\\u005ftokens":9000}',
            "m",
            9000,
            id="escaped-key-name",
        ),
        pytest.param(
            "openai.chat",
            orjson.dumps(
                {"messages": [{"role": "user", "content": "x" * 20_000}], "model": "m", "max_tokens": 7000}
            ),
            "m",
            7000,
            id="fields-after-a-20KB-prompt",
        ),
        pytest.param(
            "openai.chat",
            b'{"model":"m","messages":[],"reasoning_effort":"high"}',
            "m",
            16384 + ANSWER_ROOM,
            id="reasoning_effort-without-max_tokens",
        ),
        pytest.param(
            "openai.chat",
            b'{"model":"m","messages":[],"thinking":{"type":"enabled","budget_tokens":30000}}',
            "m",
            30000 + ANSWER_ROOM,
            id="thinking-budget-without-max_tokens",
        ),
        pytest.param(
            "openai.chat",
            b'{"model":"m","messages":[],"reasoning_effort":"high","max_tokens":5000}',
            "m",
            5000,
            id="effort-shrinks-to-fit-max_tokens",
        ),
        pytest.param(
            "openai.embeddings",
            b'{"model":"titan-embed-text-v2","input":"x"}',
            "titan-embed-text-v2",
            0,
            id="embeddings-have-no-output",
        ),
    ],
)
def test_the_ceiling_is_read_as_the_translator_reads_the_body(
    api: str, raw: bytes, model: str, output: int
) -> None:
    assert bound_of(api, raw) == (model, output)


@pytest.mark.parametrize(
    ("api", "body", "param", "message"),
    [
        ("openai.chat", {"max_tokens": 0}, "max_tokens", "must be a positive integer"),
        ("openai.chat", {"max_tokens": True}, "max_tokens", "must be a positive integer"),
        ("openai.chat", {"max_tokens": 1.5}, "max_tokens", "must be a positive integer"),
        ("openai.chat", {"max_completion_tokens": "9"}, "max_tokens", "must be a positive integer"),
        ("openai.chat", {"n": 3}, "n", "n > 1 is not supported by Bedrock"),
        ("openai.chat", {"reasoning_effort": "max"}, "reasoning_effort", "reasoning_effort must be"),
        (
            "openai.chat",
            {"thinking": {"type": "enabled", "budget_tokens": 2000}, "max_tokens": 1500},
            "max_tokens",
            "max_tokens must be greater than thinking.budget_tokens",
        ),
        ("anthropic.messages", {}, "max_tokens", "max_tokens: Field required"),
        ("anthropic.messages", {"max_tokens": -1}, "max_tokens", "max_tokens: Field required"),
    ],
)
def test_a_ceiling_the_translator_would_refuse_is_refused(
    api: str, body: dict[str, Any], param: str, message: str
) -> None:
    with pytest.raises(BodyRefused) as refused:
        call_bound(api, {"model": "m", "messages": PROMPT, **body}, "m", 100)
    assert refused.value.param == param
    assert refused.value.message.startswith(message)
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "The request body is not valid JSON."),
        (b"", "The request body is not valid JSON."),
        (b'{"model":"m"}\x00', "The request body is not valid JSON."),
        (b"\xff\xfe{}", "The request body is not valid JSON."),
        (b"[1]", "The request body must be a JSON object."),
        (b'{"messages":[]}', "model is required"),
        (b'{"model":""}', "model is required"),
        (b'{"model":7}', "model is required"),
    ],
)
def test_unreadable_bodies_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(BodyRefused) as refused:
        parse_json_object(raw)
    assert refused.value.message == message


def _parsed(raw: bytes) -> tuple[dict[str, Any], str]:
    parsed = parse_json_object(raw)
    assert parsed.size == len(raw)  # nothing here is longer when written again
    return parsed.body, parsed.model


def entry(name: str) -> ModelEntry:
    found = CATALOGUE.entry(name)
    assert found is not None
    return found


def test_the_input_bound_is_the_body_size_plus_overhead_capped_at_the_context_window() -> None:
    raw = orjson.dumps({"model": "claude-3-haiku", "messages": [{"role": "user", "content": "é" * 1000}]})
    body, model = _parsed(raw)
    bound = call_bound("openai.chat", body, model, len(raw))
    # Every token of text takes at least one byte: the body's bytes bound its tokens.
    assert bound.input_tokens == len(raw) + OVERHEAD_TOKENS
    assert bound.input_tokens_for(entry("claude-3-haiku")) == len(raw) + OVERHEAD_TOKENS
    huge = call_bound("openai.chat", body, model, 10**9)
    assert huge.input_tokens_for(entry("claude-3-haiku")) == 200_000


def test_images_count_as_a_fixed_bound_instead_of_their_base64() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 400_000}}
    raw = orjson.dumps(
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "?"}, image]}]}
    )
    body, model = _parsed(raw)
    bound = call_bound("openai.chat", body, model, len(raw))
    url = image["image_url"]["url"]  # type: ignore[index]
    assert bound.input_tokens == len(raw) - len(url) + IMAGE_TOKENS + OVERHEAD_TOKENS
    # An "image" where the translator reads text (another role) is text: counted in full.
    system = orjson.dumps({"model": "m", "messages": [{"role": "system", "content": [image]}]})
    body, model = _parsed(system)
    assert call_bound("openai.chat", body, model, len(system)).input_tokens == len(system) + OVERHEAD_TOKENS


def test_anthropic_media_documents_and_defined_tools() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_1X1 * 100}}
    document = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
    }
    nested = {"type": "tool_result", "tool_use_id": "t", "content": [image]}
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": [image, nested]}],
        "tools": [{"type": "bash_20250124", "name": "bash"}, {"name": "mine", "input_schema": {}}],
    }
    raw = orjson.dumps(body)
    bound = call_bound("anthropic.messages", body, body["model"], len(raw))
    data = len(image["source"]["data"])  # type: ignore[index]
    assert (
        bound.input_tokens == len(raw) - 2 * data + 2 * IMAGE_TOKENS + DEFINED_TOOL_TOKENS + OVERHEAD_TOKENS
    )
    assert not bound.unbounded_input
    # A PDF's compressed pages are not bounded by its bytes: only the context window is.
    body["messages"][0]["content"].append(document)
    with_pdf = call_bound("anthropic.messages", body, body["model"], len(orjson.dumps(body)))
    assert with_pdf.unbounded_input
    assert with_pdf.input_tokens_for(entry("claude-sonnet-4-5")) == entry("claude-sonnet-4-5").context_window


def test_the_default_ceiling_is_lowered_to_the_model_limit_an_explicit_one_is_not() -> None:
    llama = entry("llama3-70b")
    default = call_bound("openai.chat", {"model": "llama3-70b", "messages": PROMPT}, "llama3-70b", 50)
    assert default.output_tokens_for(llama) == llama.max_output_tokens == 2048
    explicit = call_bound(
        "openai.chat", {"model": "llama3-70b", "messages": PROMPT, "max_tokens": 3000}, "llama3-70b", 50
    )
    assert explicit.output_tokens_for(llama) == 3000


def test_cost_uses_the_dearest_input_price_and_the_output_ceiling() -> None:
    sonnet = entry("claude-sonnet-4-5")
    raw = orjson.dumps({"model": "claude-sonnet-4-5", "messages": PROMPT, "max_tokens": 1000})
    body, model = _parsed(raw)
    bound = call_bound("openai.chat", body, model, len(raw))
    prices = sonnet.prices
    assert input_price(sonnet, prices) == max(prices.input, prices.cache_write) == prices.cache_write
    opus3 = entry("claude-3-opus")  # no prompt caching on Bedrock: its input price only
    assert input_price(opus3, opus3.prices) == opus3.prices.input < opus3.prices.cache_write
    expected = ((len(raw) + OVERHEAD_TOKENS) * prices.cache_write + 1000 * prices.output) / MILLION
    assert bound_cost(bound, sonnet, prices) == expected


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("0.0123;4096", Admission(Decimal("0.0123"), 4096)),
        ("1E-7;0", Admission(Decimal("1E-7"), 0)),
        (None, None),
        ("", None),
        ("abc;1", None),
        ("1;x", None),
        ("-1;5", None),
        ("NaN;5", None),
        ("Infinity;5", None),
        ("1;-5", None),
    ],
)
def test_admission_header_round_trip(value: str | None, parsed: Admission | None) -> None:
    assert Admission.parse(value) == parsed
    if parsed is not None:
        assert Admission.parse(parsed.header_value()) == parsed


def test_a_body_that_grows_when_written_again_is_bounded_by_its_written_size() -> None:
    """Floats come back longer (1e15 -> 1000000000000000.0): the Bedrock call carries those."""
    raw = (
        b'{"model":"m","messages":[{"role":"user","content":"x"}],"p":[' + b",".join([b"1e15"] * 1000) + b"]}"
    )
    parsed = parse_json_object(raw)
    assert parsed.size == len(orjson.dumps(orjson.loads(raw))) > 3 * len(raw)


def test_a_body_nested_past_what_can_be_written_again_is_refused() -> None:
    deep = b'{"model":"m","messages":[{"role":"user","content":"x","z":' + b"[" * 250 + b"]" * 250 + b"}]}"
    with pytest.raises(BodyRefused) as refused:
        parse_json_object(deep)
    assert refused.value.message == "The request body is nested too deeply."
    fine = b'{"model":"m","messages":[{"role":"user","content":"x","z":' + b"[" * 100 + b"]" * 100 + b"}]}"
    assert parse_json_object(fine).model == "m"
