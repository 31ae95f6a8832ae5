"""Fees from token counts: exact decimals, no rounding anywhere."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.catalogue import CATALOGUE, Prices
from core.pricing import MILLION, fee_for


def price_of(name: str) -> Prices:
    resolved = CATALOGUE.resolve(name)
    assert resolved is not None
    return resolved.prices


@pytest.mark.parametrize(
    ("model", "tokens", "fee"),
    [
        pytest.param("claude-3-haiku", (0, 0, 0, 0), "0", id="nothing"),
        pytest.param("claude-3-haiku", (1000, 500, 0, 0), "0.000875", id="haiku-in-out"),
        pytest.param("claude-3-haiku", (1, 0, 0, 0), "0.00000025", id="one-input-token"),
        pytest.param("nova-micro", (1, 0, 0, 0), "0.000000035", id="tiny-price-one-token"),
        pytest.param("nova-micro", (0, 0, 1, 0), "0.00000000875", id="nova-cache-read-one-token"),
        pytest.param(
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            (1_000_000,) * 4,
            "22.05",
            id="sonnet-4-5-global-all-four-prices",
        ),
        pytest.param(
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            (1_000_000,) * 4,
            "24.255",
            id="sonnet-4-5-us-geo-premium",
        ),
        pytest.param(
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            (1000, 1000, 0, 0),
            "0.0198",
            id="sonnet-4-5-us-small",
        ),
        pytest.param("claude-3-opus", (123, 456, 789, 1011), "0.05618475", id="opus-mixed"),
        pytest.param("llama3-70b", (7, 3, 0, 0), "0.00002905", id="llama3-70b"),
        pytest.param("titan-embed-text-v2", (10_000, 0, 0, 0), "0.0002", id="embedding"),
        pytest.param("claude-3-haiku", (10**12, 10**12, 0, 0), "1500000", id="huge-counts-exact"),
    ],
)
def test_fee_for(model: str, tokens: tuple[int, int, int, int], fee: str) -> None:
    result = fee_for(price_of(model), *tokens)
    assert isinstance(result, Decimal)
    assert result == Decimal(fee)


def test_cache_arguments_default_to_zero() -> None:
    prices = price_of("claude-3-5-haiku")
    assert fee_for(prices, 100, 10) == fee_for(prices, 100, 10, 0, 0) == Decimal("0.00012")


def test_sum_of_fees_equals_fee_of_summed_usage() -> None:
    prices = price_of("us.anthropic.claude-haiku-4-5-20251001-v1:0")
    calls = [(i * 37 % 1001, i * 101 % 997, i * 7 % 89, i * 13 % 53) for i in range(1, 500)]
    total = sum((fee_for(prices, *call) for call in calls), Decimal(0))
    summed = tuple(sum(call[i] for call in calls) for i in range(4))
    assert total == fee_for(prices, *summed)
    # and equal to the plain formula, computed independently
    inp, out, cr, cw = summed
    expected = (
        inp * prices.input + out * prices.output + cr * prices.cache_read + cw * prices.cache_write
    ) / MILLION
    assert total == expected
