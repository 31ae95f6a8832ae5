"""Request bodies as a hostile client writes them, for property-based tests (hypothesis).

Valid OpenAI and Anthropic bodies over every chat model of the catalogue, and `serialise`,
which writes a body with the mutations that broke a reading of the body's head: duplicate
keys with a smaller value or another model first (the last one is the one that counts, as
in every JSON parser BRProxy uses), reordered keys, escaped key names, whitespace padding.
"""

from __future__ import annotations

import base64
import random
from typing import Any

import orjson
from hypothesis import strategies as st

from core.catalogue import CATALOGUE

__all__ = ["CHAT_MODELS", "CLAUDE_MODELS", "anthropic_bodies", "openai_bodies", "serialise", "texts"]

PNG = base64.b64encode(
    base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
).decode()
CHAT_MODELS = [e.name for e in CATALOGUE.chat_models()]
CLAUDE_MODELS = [e.name for e in CATALOGUE.chat_models() if e.provider == "anthropic"]
REGIONS = ["us-east-1", "eu-west-1", "ap-northeast-1", "sa-east-1"]

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60).filter(
    lambda t: t.strip() != ""
)
ceilings = st.one_of(st.none(), st.integers(min_value=1, max_value=200_000))


def serialise(body: dict[str, Any], rng: random.Random) -> bytes:
    """The body as JSON with a hostile client's mutations (the parsed meaning is unchanged
    except where a duplicate key is added: then its last value is the one that counts)."""
    items = list(body.items())
    rng.shuffle(items)
    parts: list[bytes] = []
    for key, value in items:
        name = orjson.dumps(key)
        if rng.random() < 0.2 and "_" in key:
            name = name.replace(b"_", b"\\u005f", 1)  # an escaped key name
        parts.append(name + b":" + orjson.dumps(value))
        if rng.random() < 0.2:
            # A duplicate before the real one: smaller ceilings, another model, first.
            decoy = 1 if isinstance(value, int) else "claude-3-haiku" if key == "model" else value
            parts.insert(rng.randrange(len(parts)), name + b":" + orjson.dumps(decoy))
    padding = b" \n\t" * rng.randrange(0, 3)
    return b"{" + padding + (b"," + padding).join(parts) + padding + b"}"


@st.composite
def openai_bodies(draw: st.DrawFn) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": draw(st.sampled_from(["system", "developer"])), "content": draw(texts)})
    for turn in range(draw(st.integers(1, 4))):
        if turn % 2 == 0:
            content: Any = draw(texts)
            if draw(st.booleans()):
                content = [{"type": "text", "text": content}]
                if draw(st.booleans()):
                    content.append(
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}}
                    )
            messages.append(
                {"role": "user", "content": content, **({"max_tokens": 1} if draw(st.booleans()) else {})}
            )
        else:
            messages.append({"role": "assistant", "content": draw(texts)})
    if messages[-1]["role"] != "user":
        messages.append({"role": "user", "content": draw(texts)})
    body: dict[str, Any] = {"model": draw(st.sampled_from(CHAT_MODELS)), "messages": messages}
    for name in ("max_tokens", "max_completion_tokens"):
        value = draw(ceilings)
        if value is not None:
            body[name] = value
    reasoning = draw(st.sampled_from([None, "effort", "thinking"]))
    if reasoning == "effort":
        body["reasoning_effort"] = draw(st.sampled_from(["none", "minimal", "low", "medium", "high"]))
    elif reasoning == "thinking":
        body["thinking"] = {"type": "enabled", "budget_tokens": draw(st.integers(1024, 64_000))}
    if draw(st.booleans()):
        body["tools"] = [
            {"type": "function", "function": {"name": "lookup", "description": draw(texts), "parameters": {}}}
        ]
    elif draw(st.booleans()):
        body["response_format"] = {"type": "json_object"}
    if draw(st.booleans()):
        body["stream"] = True
    return body


@st.composite
def anthropic_bodies(draw: st.DrawFn) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for turn in range(draw(st.integers(1, 4))):
        role = "user" if turn % 2 == 0 else "assistant"
        content: Any = draw(texts)
        if role == "user" and draw(st.booleans()):
            content = [
                {"type": "text", "text": content},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            ]
        messages.append({"role": role, "content": content})
    if messages[-1]["role"] != "user":
        messages.append({"role": "user", "content": draw(texts)})
    body: dict[str, Any] = {
        "model": draw(st.sampled_from(CLAUDE_MODELS)),
        "max_tokens": draw(st.integers(1, 128_000)),
        "messages": messages,
    }
    if draw(st.booleans()):
        body["system"] = draw(texts)
    if draw(st.booleans()):
        budget = draw(st.integers(1024, 64_000))
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if draw(st.booleans()):
        body["tools"] = [{"name": "lookup", "description": draw(texts), "input_schema": {"type": "object"}}]
    return body
