"""Pricing usage events into thread rows (pure; no I/O).

Every value of a row is one Postgres can store, so that no event can fail the batch it is
written in: a failed batch is retried by the translator until it succeeds, and it holds
back every event after it, so one unstorable event would stop all billing. Client text
(prompts, answers, the session id, the end user, model names) keeps its meaning with
U+FFFD in place of each NUL or lone surrogate; the billing figures are never touched. An
event whose figures are impossible (a type Postgres would refuse, a count no call reaches)
raises ValueError, which the meter logs and drops: retrying could never make it valid.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from core.catalogue import CATALOGUE, Catalogue, Prices
from core.postgres_text import storable_text
from core.pricing import fee_for
from core.usage import UsageEvent

__all__ = ["ThreadRow", "price_event", "session_title"]

_TITLE_CHARS = 120
_ZERO = Prices(Decimal(0), Decimal(0))
_MAX_TOKENS = 10**12
"""Beyond any real call (the largest context windows are ~10**7), far below bigint's limit
even summed over a session: a larger count is a broken event, not usage."""
_MAX_INTEGER = 2**31 - 1  # Postgres integer: the latency columns


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
    return storable_text(value)


def _optional_text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string or null")
    return storable_text(value)


def _storable_json(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, list):
        return [_storable_json(v) for v in value]
    if isinstance(value, dict):
        return {storable_text(str(k)): _storable_json(v) for k, v in value.items()}
    return value


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    try:
        dumped = orjson.dumps(value).decode()
    except TypeError:  # orjson refuses lone surrogates (and non-string keys): storable first
        return orjson.dumps(_storable_json(value)).decode()
    if "\\u0000" in dumped:  # jsonb rejects \u0000 too
        dumped = orjson.dumps(_storable_json(value)).decode()
    return dumped


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def _tokens(value: int, name: str) -> int:
    if value > _MAX_TOKENS:
        raise ValueError(f"{name} is beyond any real call ({value})")
    return value


def _latency(value: Any) -> int | None:
    """A latency the integer column holds, else None: it is chat-log detail, not billing."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_INTEGER:
        return value
    return None


def session_title(prompt: str) -> str:
    """A session's title: the start of its first prompt, on one line."""
    return _text(" ".join(prompt.split())[:_TITLE_CHARS])


def price_event(event: UsageEvent, catalogue: Catalogue = CATALOGUE) -> tuple[ThreadRow, bool]:
    """The thread row for an event, and whether its model had a known price.

    The prices are the ones the event carries (what the call was admitted and served at): a
    price edited while the call ran does not change its fee. Only an event from an older
    translator, without them, is priced from the catalogue.
    """
    admitted = event.admitted_prices()
    resolved = (
        None
        if admitted is not None
        else catalogue.resolve(event.bedrock_model_id) or catalogue.resolve(event.model)
    )
    prices = admitted if admitted is not None else resolved.prices if resolved is not None else _ZERO
    input_tokens = _tokens(event.input_tokens, "input_tokens")
    output_tokens = _tokens(event.output_tokens, "output_tokens")
    cache_read_tokens = _tokens(event.cache_read_tokens, "cache_read_tokens")
    cache_write_tokens = _tokens(event.cache_write_tokens, "cache_write_tokens")
    fee = fee_for(prices, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
    row = ThreadRow(
        event_id=uuid.UUID(event.event_id),
        key_id=event.key_id,
        client_session_id=_optional_text(event.client_session_id or None, "client_session_id"),
        model=_text(event.model),
        bedrock_model_id=_text(event.bedrock_model_id),
        api=_text(event.api),
        stream=_flag(event.stream, "stream"),
        prompt=_text(event.prompt),
        completion=_text(event.completion),
        whole_prompt=_json_text(event.whole_prompt),
        tokens_in=input_tokens + cache_read_tokens + cache_write_tokens,
        tokens_out=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        prices=prices,
        fee=fee,
        invocation_latency_ms=_latency(event.invocation_latency_ms),
        first_byte_latency_ms=_latency(event.first_byte_latency_ms),
        status=_text(event.status),
        estimated=_flag(event.estimated, "estimated"),
        end_user=_text(event.user) if isinstance(event.user, str) else None,
        created_at=dt.datetime.fromtimestamp(event.occurred_at, dt.UTC),
    )
    return row, admitted is not None or resolved is not None
