"""Pricing usage events into thread rows (pure; no I/O)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from core.catalogue import CATALOGUE, Catalogue, Prices
from core.pricing import fee_for
from core.usage import UsageEvent

__all__ = ["ThreadRow", "price_event", "session_title"]

_TITLE_CHARS = 120
_ZERO = Prices(Decimal(0), Decimal(0))


@dataclass(frozen=True, slots=True)
class ThreadRow:
    """One `threads` row, priced. `tokens_in` counts every prompt token, cached ones included."""

    event_id: uuid.UUID
    key_id: int
    client_session_id: str | None
    model: str
    bedrock_model_id: str
    api: str
    stream: bool
    prompt: str
    completion: str
    whole_prompt: str | None
    tokens_in: int
    tokens_out: int
    cache_read_tokens: int
    cache_write_tokens: int
    prices: Prices
    fee: Decimal
    invocation_latency_ms: int | None
    first_byte_latency_ms: int | None
    status: str
    estimated: bool
    end_user: str | None
    created_at: dt.datetime


def _text(value: str) -> str:
    # Postgres text cannot hold NUL; a prompt containing one must not fail its whole batch.
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_text(str(k)): _without_nul(v) for k, v in value.items()}
    return value


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    dumped = orjson.dumps(value).decode()
    if "\\u0000" in dumped:  # jsonb rejects \u0000 too
        dumped = orjson.dumps(_without_nul(value)).decode()
    return dumped


def session_title(prompt: str) -> str:
    """A session's title: the start of its first prompt, on one line."""
    return _text(" ".join(prompt.split())[:_TITLE_CHARS])


def price_event(event: UsageEvent, catalogue: Catalogue = CATALOGUE) -> tuple[ThreadRow, bool]:
    """The thread row for an event, and whether its model had a known price."""
    resolved = catalogue.resolve(event.bedrock_model_id) or catalogue.resolve(event.model)
    prices = resolved.prices if resolved is not None else _ZERO
    fee = fee_for(
        prices, event.input_tokens, event.output_tokens, event.cache_read_tokens, event.cache_write_tokens
    )
    row = ThreadRow(
        event_id=uuid.UUID(event.event_id),
        key_id=event.key_id,
        client_session_id=_text(event.client_session_id) if event.client_session_id else None,
        model=event.model,
        bedrock_model_id=event.bedrock_model_id,
        api=event.api,
        stream=event.stream,
        prompt=_text(event.prompt),
        completion=_text(event.completion),
        whole_prompt=_json_text(event.whole_prompt),
        tokens_in=event.input_tokens + event.cache_read_tokens + event.cache_write_tokens,
        tokens_out=event.output_tokens,
        cache_read_tokens=event.cache_read_tokens,
        cache_write_tokens=event.cache_write_tokens,
        prices=prices,
        fee=fee,
        invocation_latency_ms=event.invocation_latency_ms,
        first_byte_latency_ms=event.first_byte_latency_ms,
        status=event.status,
        estimated=event.estimated,
        end_user=_text(event.user) if isinstance(event.user, str) else None,
        created_at=dt.datetime.fromtimestamp(event.occurred_at, dt.UTC),
    )
    return row, resolved is not None
