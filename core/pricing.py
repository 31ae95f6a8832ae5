"""Fees from token counts: exact decimal arithmetic, no I/O."""

from __future__ import annotations

from decimal import Decimal

from core.catalogue import Prices

__all__ = ["MILLION", "fee_for"]

MILLION = Decimal(1_000_000)


def fee_for(
    prices: Prices,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> Decimal:
    """USD for one call; `input_tokens` excludes cached tokens, as Bedrock reports them.

    The result is exact (prices are decimals per million tokens), so sums of fees equal the
    fee of summed usage and nothing is lost to rounding before money is shown to a person.
    """
    total = (
        input_tokens * prices.input
        + output_tokens * prices.output
        + cache_read_tokens * prices.cache_read
        + cache_write_tokens * prices.cache_write
    )
    return total / MILLION
