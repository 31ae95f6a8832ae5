"""What a request may cost at most, from the head of its body (pure; no I/O).

Envoy sends authz the first bytes of a paid request's body (never the whole prompt). From
them we read the model and `max_tokens`; the input is bounded by the body's size. The
estimate is deliberately an upper bound of the usual case: every byte of the body counted
as a quarter of an input token (capped at the model's context window) at the input price,
plus `max_tokens` (or a default) at the output price. An unknown or unreadable model is
reserved at a configured default.
"""

from __future__ import annotations

import re
from decimal import Decimal

from core.catalogue import Catalogue
from core.pricing import MILLION

__all__ = ["EstimateSettings", "estimate_cost", "model_and_max_tokens"]

# Top-level-looking keys only: inside a JSON string, quotes are escaped, so a prompt that
# mentions "model" cannot match.
_MODEL = re.compile(rb'[{,]\s*"model"\s*:\s*"([^"\\]{1,256})"')
_MAX_TOKENS = re.compile(rb'[{,]\s*"(?:max_completion_tokens|max_tokens)"\s*:\s*(\d{1,9})')


class EstimateSettings:
    """Defaults for requests whose body does not say."""

    def __init__(self, default_max_tokens: int = 4096, unknown_model_cost: Decimal = Decimal("0.10")) -> None:
        self.default_max_tokens = default_max_tokens
        self.unknown_model_cost = unknown_model_cost


def model_and_max_tokens(body_head: bytes) -> tuple[str | None, int | None]:
    model = _MODEL.search(body_head)
    max_tokens = _MAX_TOKENS.search(body_head)
    return (
        model.group(1).decode("utf-8", "replace") if model else None,
        int(max_tokens.group(1)) if max_tokens else None,
    )


def estimate_cost(
    path: str, body_head: bytes, body_size: int, catalogue: Catalogue, settings: EstimateSettings
) -> Decimal:
    """An upper estimate of the request's cost in USD."""
    model, max_tokens = model_and_max_tokens(body_head)
    resolved = catalogue.resolve(model) if model else None
    if resolved is None:
        return settings.unknown_model_cost
    prices = resolved.prices
    input_tokens = min(max(body_size, len(body_head)) // 4, resolved.entry.context_window)
    output_tokens = 0 if path.startswith("/v1/embeddings") else (max_tokens or settings.default_max_tokens)
    return (input_tokens * prices.input + output_tokens * prices.output) / MILLION
