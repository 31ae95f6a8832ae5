"""Cost estimates from the head of a request body."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from authz.estimate import EstimateSettings, estimate_cost, model_and_max_tokens
from core.catalogue import CATALOGUE
from core.pricing import MILLION


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b'{"model": "claude-3-haiku", "max_tokens": 100}', ("claude-3-haiku", 100), id="plain"),
        pytest.param(
            b'{"messages": [], "model":"m","max_completion_tokens":7}', ("m", 7), id="openai-new-name"
        ),
        pytest.param(
            orjson.dumps({"messages": [{"role": "user", "content": 'say "model": "x", "max_tokens": 1'}]}),
            (None, None),
            id="mentions-inside-a-prompt-do-not-count",
        ),
        pytest.param(b'{"messages": [{"content": "a' + b"x" * 100, (None, None), id="cut-off-head"),
    ],
)
def test_model_and_max_tokens(body: bytes, expected: tuple[str | None, int | None]) -> None:
    assert model_and_max_tokens(body) == expected


def test_estimate_uses_the_model_prices_and_max_tokens() -> None:
    body = orjson.dumps({"model": "claude-3-haiku", "max_tokens": 1000, "messages": []})
    resolved = CATALOGUE.resolve("claude-3-haiku")
    assert resolved is not None
    expected = (4000 // 4 * resolved.prices.input + 1000 * resolved.prices.output) / MILLION
    assert estimate_cost("/v1/chat/completions", body, 4000, CATALOGUE, EstimateSettings()) == expected


def test_missing_max_tokens_uses_the_default_and_embeddings_have_no_output() -> None:
    settings = EstimateSettings(default_max_tokens=10)
    body = b'{"model": "claude-3-haiku"}'
    resolved = CATALOGUE.resolve("claude-3-haiku")
    assert resolved is not None
    chat = estimate_cost("/v1/chat/completions", body, len(body), CATALOGUE, settings)
    assert chat == (len(body) // 4 * resolved.prices.input + 10 * resolved.prices.output) / MILLION
    embed = estimate_cost("/v1/embeddings", b'{"model": "titan-embed-text-v2"}', 400, CATALOGUE, settings)
    assert embed == Decimal(100) * CATALOGUE.resolve("titan-embed-text-v2").prices.input / MILLION  # type: ignore[union-attr]


def test_unknown_model_is_reserved_at_the_default() -> None:
    settings = EstimateSettings(unknown_model_cost=Decimal("0.25"))
    assert estimate_cost("/v1/chat/completions", b'{"model": "gpt-4"}', 20, CATALOGUE, settings) == Decimal(
        "0.25"
    )
    assert estimate_cost("/v1/chat/completions", b"{", 1, CATALOGUE, settings) == Decimal("0.25")


def test_input_is_capped_at_the_context_window() -> None:
    body = b'{"model": "claude-3-haiku", "max_tokens": 1}'
    resolved = CATALOGUE.resolve("claude-3-haiku")
    assert resolved is not None
    huge = estimate_cost("/v1/chat/completions", body, 10**9, CATALOGUE, EstimateSettings())
    window = resolved.entry.context_window
    assert huge == (window * resolved.prices.input + resolved.prices.output) / MILLION
