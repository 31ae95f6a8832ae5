"""Pricing a usage event into a thread row (pure)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import orjson
import pytest

from core.catalogue import Prices
from core.usage import UsageEvent
from meter.billing import price_event, session_title

EVENT_ID = "6f1c2a7e-3d4b-4c5a-9e8f-0a1b2c3d4e5f"
OCCURRED = 1_748_779_200.25  # 2025-06-01T12:00:00.25Z


def event(**overrides: Any) -> UsageEvent:
    fields: dict[str, Any] = {
        "event_id": EVENT_ID,
        "key_id": 3,
        "model": "claude-3-haiku",
        "bedrock_model_id": "anthropic.claude-3-haiku-20240307-v1:0",
        "occurred_at": OCCURRED,
    }
    fields.update(overrides)
    return UsageEvent(**fields)


def p(inp: str, out: str, cr: str = "0", cw: str = "0") -> Prices:
    return Prices(Decimal(inp), Decimal(out), Decimal(cr), Decimal(cw))


PRICE_CASES = [
    pytest.param(
        event(input_tokens=1000, output_tokens=500), p("0.25", "1.25"), "0.000875", 1000, True, id="haiku"
    ),
    pytest.param(
        event(
            model="claude-sonnet-4-5",
            bedrock_model_id="us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            input_tokens=1000,
            output_tokens=100,
            cache_read_tokens=10_000,
            cache_write_tokens=2000,
        ),
        p("3.3", "16.5", "0.33", "4.125"),
        "0.0165",
        13_000,
        True,
        id="geo-premium-with-cache-tokens",
    ),
    pytest.param(
        event(
            model="claude-sonnet-4-5",
            bedrock_model_id="global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            input_tokens=1_000_000,
            output_tokens=1_000_000,
            cache_read_tokens=1_000_000,
            cache_write_tokens=1_000_000,
        ),
        p("3", "15", "0.3", "3.75"),
        "22.05",
        3_000_000,
        True,
        id="global-no-premium",
    ),
    pytest.param(
        event(bedrock_model_id="anthropic.some-renamed-id", input_tokens=4, output_tokens=4),
        p("0.25", "1.25"),
        "0.000006",
        4,
        True,
        id="falls-back-to-client-model-name",
    ),
    pytest.param(
        event(
            model="mystery",
            bedrock_model_id="vendor.mystery-v1:0",
            input_tokens=10**6,
            output_tokens=10**6,
            cache_read_tokens=5,
        ),
        p("0", "0"),
        "0",
        10**6 + 5,
        False,
        id="unknown-model-zero-price",
    ),
    pytest.param(event(), p("0.25", "1.25"), "0", 0, True, id="no-tokens"),
]


@pytest.mark.parametrize(("usage", "prices", "fee", "tokens_in", "priced"), PRICE_CASES)
def test_price_event(usage: UsageEvent, prices: Prices, fee: str, tokens_in: int, priced: bool) -> None:
    row, was_priced = price_event(usage)
    assert was_priced is priced
    assert row.prices == prices
    assert row.fee == Decimal(fee)
    assert isinstance(row.fee, Decimal)
    assert row.tokens_in == tokens_in
    assert row.tokens_in == usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    assert row.tokens_out == usage.output_tokens
    assert (row.cache_read_tokens, row.cache_write_tokens) == (
        usage.cache_read_tokens,
        usage.cache_write_tokens,
    )


def test_price_event_copies_every_field() -> None:
    usage = event(
        input_tokens=1,
        output_tokens=2,
        client_session_id="sess-1",
        stream=True,
        prompt="hi",
        completion="hello",
        whole_prompt=[{"role": "user", "content": "hi"}],
        invocation_latency_ms=120,
        first_byte_latency_ms=80,
        status="client_closed",
        estimated=True,
        api="openai.chat",
        user="end-user",
    )
    row, _ = price_event(usage)
    assert row.event_id == uuid.UUID(EVENT_ID)
    assert row.key_id == 3
    assert row.client_session_id == "sess-1"
    assert (row.model, row.bedrock_model_id, row.api) == (
        "claude-3-haiku",
        usage.bedrock_model_id,
        "openai.chat",
    )
    assert row.stream is True
    assert (row.prompt, row.completion) == ("hi", "hello")
    assert row.whole_prompt is not None
    assert orjson.loads(row.whole_prompt) == [{"role": "user", "content": "hi"}]
    assert (row.invocation_latency_ms, row.first_byte_latency_ms) == (120, 80)
    assert (row.status, row.estimated, row.end_user) == ("client_closed", True, "end-user")
    assert row.created_at == dt.datetime(2025, 6, 1, 12, 0, 0, 250000, tzinfo=dt.UTC)


R = "\ufffd"

NUL_CASES = [
    pytest.param({"prompt": "a\x00b"}, "prompt", f"a{R}b", id="prompt"),
    pytest.param({"completion": "\x00\x00"}, "completion", R + R, id="completion"),
    pytest.param({"client_session_id": "s\x001"}, "client_session_id", f"s{R}1", id="client-session-id"),
    pytest.param(
        {"whole_prompt": [{"role": "user", "content": "x\x00y"}]},
        "whole_prompt",
        orjson.dumps([{"role": "user", "content": f"x{R}y"}]).decode(),
        id="whole-prompt-value",
    ),
    pytest.param(
        {"whole_prompt": {"k\x00": ["v", {"deep\x00": "\x00"}], "n": 1, "ok": None}},
        "whole_prompt",
        orjson.dumps({f"k{R}": ["v", {f"deep{R}": R}], "n": 1, "ok": None}).decode(),
        id="whole-prompt-keys-and-nesting",
    ),
    pytest.param(
        {"whole_prompt": [{"content": "literal \\u0000 text"}]},
        "whole_prompt",
        orjson.dumps([{"content": "literal \\u0000 text"}]).decode(),
        id="escaped-text-left-alone",
    ),
    pytest.param({"whole_prompt": None}, "whole_prompt", None, id="no-whole-prompt"),
    pytest.param({"prompt": "clean"}, "prompt", "clean", id="clean-text-unchanged"),
]


@pytest.mark.parametrize(("fields", "attribute", "expected"), NUL_CASES)
def test_nul_characters_are_replaced(fields: dict[str, Any], attribute: str, expected: Any) -> None:
    row, _ = price_event(event(**fields))
    value = getattr(row, attribute)
    assert value == expected
    if isinstance(value, str):
        assert "\x00" not in value
        assert "\\u0000" not in value or "literal" in value


def test_nul_in_end_user_is_replaced() -> None:
    row, _ = price_event(event(user="attacker\x00"))
    assert row.end_user == f"attacker{R}"


# The meter (meter/server.py `_ingest`) drops a malformed event only when parsing and pricing
# raise TypeError, ValueError or KeyError; anything else fails the whole batch (HTTP 500), and
# the translator's MeterSink retries that batch forever.
MALFORMED = [
    pytest.param({"event_id": "nope"}, id="bad-uuid"),
    pytest.param({"event_id": 42}, id="numeric-event-id"),
    pytest.param({"input_tokens": -1}, id="negative-tokens"),
    pytest.param({"occurred_at": "yesterday"}, id="occurred-at-string"),
    pytest.param({"occurred_at": float("nan")}, id="occurred-at-nan"),
    pytest.param({"occurred_at": float("inf")}, id="occurred-at-infinite"),
    pytest.param({"occurred_at": 1e20}, id="occurred-at-out-of-range"),
    pytest.param({"prompt": None}, id="prompt-null"),
]


@pytest.mark.parametrize("overrides", MALFORMED)
def test_malformed_events_raise_what_the_meter_catches(overrides: dict[str, Any]) -> None:
    raw = event().to_dict() | overrides
    with pytest.raises((TypeError, ValueError, KeyError)):
        price_event(UsageEvent.from_dict(raw))


def test_non_object_event_raises_what_the_meter_catches() -> None:
    with pytest.raises((TypeError, ValueError, KeyError)):
        UsageEvent.from_dict([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prompt", "title"),
    [
        pytest.param("Hello there", "Hello there", id="short"),
        pytest.param("  Many   spaces\n\nand\tlines  ", "Many spaces and lines", id="whitespace-collapsed"),
        pytest.param("x" * 500, "x" * 120, id="truncated-to-120"),
        pytest.param("word " * 30, ("word " * 30).strip()[:120], id="truncated-after-collapse"),
        pytest.param("", "", id="empty"),
        pytest.param("a\x00b", f"a{R}b", id="nul-replaced"),
        pytest.param("日本語のタイトル" * 20, ("日本語のタイトル" * 20)[:120], id="characters-not-bytes"),
    ],
)
def test_session_title(prompt: str, title: str) -> None:
    assert session_title(prompt) == title
    assert len(session_title(prompt)) <= 120


UNSTORABLE_TEXT_CASES = [
    pytest.param({"prompt": "a\ud800b"}, "prompt", f"a{R}b", id="lone-surrogate-prompt"),
    pytest.param({"completion": "\udfff"}, "completion", R, id="lone-surrogate-completion"),
    pytest.param({"client_session_id": "s\udc00"}, "client_session_id", f"s{R}", id="lone-surrogate-session"),
    pytest.param({"user": "u\ud800"}, "end_user", f"u{R}", id="lone-surrogate-user"),
    pytest.param({"model": "m\x00"}, "model", f"m{R}", id="nul-model"),
    pytest.param({"bedrock_model_id": "b\ud800"}, "bedrock_model_id", f"b{R}", id="surrogate-bedrock-id"),
    pytest.param({"api": "openai.chat\x00"}, "api", f"openai.chat{R}", id="nul-api"),
    pytest.param({"status": "ok\x00"}, "status", f"ok{R}", id="nul-status"),
    pytest.param(
        {"whole_prompt": [{"content": "x\ud800y", "k\udc00": "\x00"}]},
        "whole_prompt",
        orjson.dumps([{"content": f"x{R}y", f"k{R}": R}]).decode(),
        id="surrogates-and-nul-in-whole-prompt",
    ),
    pytest.param({"prompt": "pair \U0001f600 kept"}, "prompt", "pair \U0001f600 kept", id="astral-kept"),
]


@pytest.mark.parametrize(("fields", "attribute", "expected"), UNSTORABLE_TEXT_CASES)
def test_every_text_column_is_storable(fields: dict[str, Any], attribute: str, expected: Any) -> None:
    row, _ = price_event(event(input_tokens=10, output_tokens=5, **fields))
    assert getattr(row, attribute) == expected
    assert row.fee == price_event(event(input_tokens=10, output_tokens=5))[0].fee


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"stream": "yes"}, id="stream-not-a-flag"),
        pytest.param({"estimated": 1}, id="estimated-not-a-flag"),
        pytest.param({"client_session_id": 42}, id="session-id-not-text"),
        pytest.param({"input_tokens": 10**13}, id="tokens-beyond-any-call"),
        pytest.param({"cache_write_tokens": 2**63}, id="tokens-beyond-bigint"),
    ],
)
def test_impossible_figures_raise_what_the_meter_catches(fields: dict[str, Any]) -> None:
    raw = event().to_dict() | fields
    with pytest.raises(ValueError):
        price_event(UsageEvent.from_dict(raw))


@pytest.mark.parametrize("latency", [12.5, -1, 2**31, True, "12"])
def test_a_latency_the_column_cannot_hold_is_dropped_not_the_event(latency: Any) -> None:
    row, _ = price_event(event(input_tokens=1, invocation_latency_ms=latency, first_byte_latency_ms=latency))
    assert (row.invocation_latency_ms, row.first_byte_latency_ms) == (None, None)
    assert row.tokens_in == 1


def test_an_event_is_billed_at_the_prices_it_carries_not_the_catalogues() -> None:
    """Priced once: the prices a call was admitted and served at, even for a model the catalogue
    has changed or dropped since."""
    admitted = event(
        input_tokens=1000,
        output_tokens=100,
        bedrock_model_id="gone.model-v1",
        prices=["1.5", "7", "0.15", "1.875"],
    )
    row, priced = price_event(admitted)
    assert priced
    assert row.prices == p("1.5", "7", "0.15", "1.875")
    assert row.fee == Decimal("0.0022")  # (1000 * 1.5 + 100 * 7) / 10^6, exactly


@pytest.mark.parametrize(
    "prices",
    [
        ["1", "2", "3"],
        ["1", "2", "3", "x"],
        ["1", "2", "3", "-1"],
        ["1", "2", "3", "NaN"],
        [1, 2, 3, 4],
        "1,2,3,4",
    ],
)
def test_malformed_prices_are_refused(prices: Any) -> None:
    data = orjson.loads(orjson.dumps(event(prices=None)))
    data["prices"] = prices
    with pytest.raises(ValueError, match="prices"):
        UsageEvent.from_dict(data)
