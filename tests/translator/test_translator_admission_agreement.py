"""authz admits a call for at least what the translator then sends Bedrock, whatever the body.

Property-based: valid OpenAI and Anthropic bodies, serialised with the mutations a hostile
client would use (duplicate keys with the small value first or last, reordered keys, escaped
key names, whitespace padding, nesting), are read by authz (`authz.estimate.admission_for`,
over the raw bytes) and by the translator (its own parse and Bedrock body). Whenever the
translator would call Bedrock:

- authz admitted the call (it never refuses what the translator serves);
- the Bedrock body's output ceiling is exactly the one authz reserved for;
- the cost at the prices the translator's region serves is within what authz reserved;
- every byte of text the model will read is within the input bound authz priced.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson
from hostile_bodies import anthropic_bodies, openai_bodies, serialise
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.estimate import admission_for
from core.admission import BodyRefused, bound_cost, call_bound
from core.catalogue import CATALOGUE
from translator.anthropic_bedrock import AnthropicRequest, parse_betas
from translator.converse_helpers import InvalidRequest
from translator.openai_bedrock import OpenAIChatRequest

REGIONS = ["us-east-1", "eu-west-1", "ap-northeast-1", "sa-east-1"]


def prompt_text_bytes(value: Any) -> int:
    """UTF-8 bytes of every string the model reads in a Bedrock body (image data excluded)."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, list):
        return sum(prompt_text_bytes(v) for v in value)
    if isinstance(value, dict):
        total = 0
        for key, item in value.items():
            if key in ("bytes", "data", "signature") or (key == "source" and isinstance(item, dict)):
                continue
            total += prompt_text_bytes(item)
        return total
    return 0


@dataclass(frozen=True)
class TranslatorServes:
    """What the translator makes of a body: its Bedrock body and output ceiling."""

    api: str
    path: str
    bedrock: dict[str, Any]
    output_sent: int
    model: str


def openai_chat(raw: bytes, region: str) -> tuple[TranslatorServes, dict[str, Any], int]:
    chat = OpenAIChatRequest.parse(raw)
    resolved = CATALOGUE.resolve(chat.model, region)
    assert resolved is not None
    converse = chat.to_converse(resolved.entry)
    served = TranslatorServes(
        "openai.chat", "/v1/chat/completions", converse, converse["inferenceConfig"]["maxTokens"], chat.model
    )
    return served, chat.body, chat.size


def anthropic_messages(raw: bytes, region: str) -> tuple[TranslatorServes, dict[str, Any], int]:
    chat = AnthropicRequest.parse(raw)
    resolved = CATALOGUE.resolve(chat.model, region)
    assert resolved is not None
    bedrock, _ = chat.to_bedrock(resolved.entry, parse_betas(["interleaved-thinking-2025-05-14"]))
    return (
        TranslatorServes("anthropic.messages", "/v1/messages", bedrock, bedrock["max_tokens"], chat.model),
        chat.body,
        chat.size,
    )


def strip_media(value: Any) -> Any:
    """A Bedrock body without its images' data (bounded apart, by IMAGE_TOKENS each)."""
    if isinstance(value, list):
        return [strip_media(v) for v in value]
    if isinstance(value, dict):
        return {k: "" if k in ("bytes", "data") else strip_media(v) for k, v in value.items()}
    return value


def check_agreement(raw: bytes, region: str, serve: Any) -> None:
    try:
        served, body, size = serve(raw, region)
    except InvalidRequest:
        return  # the translator refuses it: no Bedrock call, nothing spent
    try:
        admission = admission_for(served.path, raw, CATALOGUE)
    except BodyRefused as refusal:
        raise AssertionError(f"authz refused what the translator serves: {refusal.message}") from None
    resolved = CATALOGUE.resolve(served.model, region)
    assert resolved is not None
    assert served.output_sent == admission.output_tokens
    bound = call_bound(served.api, body, served.model, size)
    assert bound_cost(bound, resolved.entry, resolved.prices) <= admission.cost
    assert prompt_text_bytes(served.bedrock) <= bound.input_tokens_for(resolved.entry)
    # Every byte of the Bedrock call but its media is within the bound, floats written again included.
    assert len(orjson.dumps(strip_media(served.bedrock))) <= bound.input_tokens_for(resolved.entry)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=openai_bodies(), seed=st.integers(0, 2**32), region=st.sampled_from(REGIONS))
def test_openai_chat_sends_bedrock_no_more_than_authz_admitted(
    body: dict[str, Any], seed: int, region: str
) -> None:
    check_agreement(serialise(body, random.Random(seed)), region, openai_chat)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=anthropic_bodies(), seed=st.integers(0, 2**32), region=st.sampled_from(REGIONS))
def test_anthropic_messages_sends_bedrock_no_more_than_authz_admitted(
    body: dict[str, Any], seed: int, region: str
) -> None:
    check_agreement(serialise(body, random.Random(seed)), region, anthropic_messages)


def test_serialise_really_mutates() -> None:
    """The mutations above happen (a property test of nothing would pass too)."""
    body = {"model": "claude-3-opus", "max_tokens": 500, "messages": [{"role": "user", "content": "x"}]}
    seen = {serialise(body, random.Random(seed)) for seed in range(200)}
    assert any(b"\\u005f" in raw for raw in seen)
    assert any(raw.count(b'"model"') == 2 for raw in seen)
    assert any(raw.count(b"max_tokens") + raw.count(b"max\\u005ftokens") == 2 for raw in seen)
    assert all(orjson.loads(raw)["max_tokens"] == 500 for raw in seen)
    assert all(orjson.loads(raw)["model"] == "claude-3-opus" for raw in seen)
