"""What a model call may cost at most, read from its body exactly as the translator reads it.

Pure: no I/O. authz reserves a call's worst case from this reading before the call starts, and
the translator builds its Bedrock request from the same reading of the same bytes (the edge
buffers the whole body and sends authz and the translator identical copies), so no body can
be admitted for less than it then asks Bedrock for. Both parse with orjson: for duplicate
keys the last one wins in both, escapes are decoded once, and nothing depends on where in the
body a field stands.

The worst case of one call:

- **Output**: the output ceiling the translator sends Bedrock (`maxTokens` / `max_tokens`),
  which Bedrock never exceeds; thinking counts within it. It is always explicit: when a
  client sets none, the translator sends `DEFAULT_MAX_TOKENS` (or a thinking budget plus
  `ANSWER_ROOM`), never leaving Bedrock to pick a model's own, larger, default.
- **Input**: every token of text takes at least one byte of the body (byte-level tokenisers,
  and JSON escapes only lengthen text), so the body's size bounds its text tokens; an image's
  base64 is replaced by `IMAGE_TOKENS` (models scale images down to a fixed pixel budget);
  a document (a PDF: compressed text) is unbounded but for the model's context window;
  `OVERHEAD_TOKENS` covers what Bedrock adds around a prompt (role markers, the tool-use
  system prompt), `DEFINED_TOOL_TOKENS` each tool whose definition Anthropic supplies (only
  its type is in the body). A chat prompt is capped at the model's context window: Bedrock
  refuses a longer one. The price of an input token is the highest of the model's input,
  cache-write and cache-read prices (for a model that caches prompts), whichever Bedrock
  reports it as.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from core.catalogue import ModelEntry, Prices
from core.pricing import MILLION

__all__ = [
    "ANSWER_ROOM",
    "API_KIND",
    "DEFAULT_MAX_TOKENS",
    "DEFINED_TOOL_TOKENS",
    "EFFORT_BUDGETS",
    "IMAGE_TOKENS",
    "MAX_BODY_BYTES",
    "MAX_CALL_SECONDS",
    "MIN_THINKING_BUDGET",
    "OVERHEAD_TOKENS",
    "Admission",
    "BodyRefused",
    "CallBound",
    "OutputCeiling",
    "ParsedBody",
    "bound_cost",
    "call_bound",
    "input_price",
    "openai_output_ceiling",
    "output_tokens_for",
    "paid_api",
    "parse_json_object",
    "unknown_model",
    "wrong_kind",
]

MAX_CALL_SECONDS = 3600
"""The longest a model call may run: the edge ends it then (Bedrock's own limit for one
inference is an hour too). A reservation outlives its call by this bound."""

MAX_BODY_BYTES = 32 * 1024 * 1024
"""The largest model-call body BRProxy takes (Anthropic's own request limit): the edge buffers
up to this much of a body for authz and answers 413 beyond it."""

DEFAULT_MAX_TOKENS = 4096
"""The output ceiling of a chat call whose client set none."""
EFFORT_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
"""OpenAI's `reasoning_effort` → Claude's thinking budget (tokens)."""
MIN_THINKING_BUDGET = 1024
ANSWER_ROOM = 4096
"""Output room beyond the thinking budget when the client set no max_tokens."""
IMAGE_TOKENS = 10_000
"""At most what one image costs in input tokens (Claude scales images to about 1.15
megapixels, about 1,600 tokens; other Bedrock vision models stay below this too)."""
OVERHEAD_TOKENS = 1024
"""Tokens Bedrock may add around a prompt's own: role markers, the tool-use system prompt
(Anthropic documents 300-530 tokens)."""
DEFINED_TOOL_TOKENS = 2048
"""An Anthropic-defined tool (bash, text editor, computer use): its definition and system
prompt are added by the model's provider (Anthropic documents up to about 1,200 tokens)."""

_PAID_APIS = {
    "/v1/chat/completions": "openai.chat",
    "/v1/messages": "anthropic.messages",
    "/v1/embeddings": "openai.embeddings",
}
API_KIND = {"openai.chat": "chat", "anthropic.messages": "chat", "openai.embeddings": "embedding"}
"""The kind of model each paid API serves."""


class BodyRefused(Exception):
    """The body cannot be served as it is: the client's error (400 unless said otherwise)."""

    def __init__(
        self, message: str, param: str | None = None, status: int = 400, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
        self.code = code


def _shown(name: str) -> str:
    """A client's model name as an error message quotes it (bounded: it is free client text)."""
    return name if len(name) <= 100 else name[:100] + "…"


def unknown_model(name: str) -> BodyRefused:
    """A model the catalogue does not have, or has switched off: 404."""
    return BodyRefused(
        f"The model '{_shown(name)}' does not exist or is not offered by this gateway.",
        "model",
        404,
        "model_not_found",
    )


def wrong_kind(name: str, entry: ModelEntry, kind: str) -> BodyRefused | None:
    """A model of another kind than the API serves (an embedding model on chat): 400."""
    if entry.kind == kind:
        return None
    if entry.kind == "embedding":
        what, where = "an embedding model", "/v1/embeddings"
    else:
        what, where = "a chat model", "/v1/chat/completions or /v1/messages"
    message = f"The model '{_shown(name)}' is {what}; call it on {where}."
    return BodyRefused(message, "model", 400, "model_not_supported")


def _refuse_unless(condition: bool, message: str, param: str | None) -> None:
    if not condition:
        raise BodyRefused(message, param)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True, slots=True)
class OutputCeiling:
    """An OpenAI chat call's output ceiling and the thinking budget inside it."""

    max_tokens: int
    """Sent to Bedrock as `inferenceConfig.maxTokens`: the output never exceeds it."""
    thinking_budget: int | None
    """Claude's thinking budget (within max_tokens), or None when reasoning is off."""
    explicit_max_tokens: bool
    """Whether the client set max_tokens (else DEFAULT_MAX_TOKENS or budget + ANSWER_ROOM)."""


def output_tokens_for(ceiling: OutputCeiling, entry: ModelEntry) -> int:
    """The `maxTokens` to send the model: the default ceiling lowered to the model's own limit
    where that is smaller (an explicit max_tokens is the client's to choose)."""
    if ceiling.explicit_max_tokens or ceiling.thinking_budget is not None or not entry.max_output_tokens:
        return ceiling.max_tokens
    return min(ceiling.max_tokens, entry.max_output_tokens)


def openai_output_ceiling(body: dict[str, Any]) -> OutputCeiling:
    """The output ceiling of an OpenAI chat body: `max_completion_tokens`, else `max_tokens`,
    with `thinking` / `reasoning_effort` fitted inside it (raises BodyRefused)."""
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:  # absent or null: the older name may carry it
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        _refuse_unless(_positive_int(max_tokens), "must be a positive integer", "max_tokens")
    budget = _thinking_budget(body)
    if budget is None:
        if max_tokens is None:
            return OutputCeiling(DEFAULT_MAX_TOKENS, None, explicit_max_tokens=False)
        return OutputCeiling(max_tokens, None, explicit_max_tokens=True)
    # max_tokens counts thinking and answer together. Without it there is room for the budget
    # and an answer; with it, an effort level shrinks to fit, while an explicit
    # `thinking.budget_tokens` that does not fit is the client's error.
    if max_tokens is None:
        return OutputCeiling(budget + ANSWER_ROOM, budget, explicit_max_tokens=False)
    if max_tokens > budget:
        return OutputCeiling(max_tokens, budget, explicit_max_tokens=True)
    if "thinking" in body:
        raise BodyRefused("max_tokens must be greater than thinking.budget_tokens", "max_tokens")
    if max_tokens <= MIN_THINKING_BUDGET:
        raise BodyRefused(
            f"with reasoning on, max_tokens must be greater than {MIN_THINKING_BUDGET} "
            "(it counts the thinking too)",
            "max_tokens",
        )
    return OutputCeiling(max_tokens, max_tokens - 1, explicit_max_tokens=True)


def _thinking_budget(body: dict[str, Any]) -> int | None:
    """Claude's thinking budget asked for by `thinking` or `reasoning_effort` (None: off)."""
    thinking = body.get("thinking")
    if thinking is not None:
        _refuse_unless(isinstance(thinking, dict), "thinking must be an object", "thinking")
        assert isinstance(thinking, dict)
        kind = thinking.get("type")
        _refuse_unless(
            kind in ("enabled", "disabled"), "thinking.type must be 'enabled' or 'disabled'", "thinking.type"
        )
        if kind == "disabled":
            return None
        budget = thinking.get("budget_tokens")
        _refuse_unless(
            isinstance(budget, int) and not isinstance(budget, bool) and budget >= MIN_THINKING_BUDGET,
            f"thinking.budget_tokens must be an integer >= {MIN_THINKING_BUDGET}",
            "thinking.budget_tokens",
        )
        assert isinstance(budget, int)
        return budget
    effort = body.get("reasoning_effort")
    if effort is None:
        return None
    _refuse_unless(
        effort == "none" or effort in EFFORT_BUDGETS,
        "reasoning_effort must be 'none', 'minimal', 'low', 'medium' or 'high'",
        "reasoning_effort",
    )
    return EFFORT_BUDGETS.get(str(effort))


@dataclass(frozen=True, slots=True)
class CallBound:
    """The most a call can use, in tokens, before the model is known."""

    model: str
    input_tokens: int
    """Upper bound of the prompt's tokens (before the context-window cap)."""
    output: OutputCeiling
    """The output ceiling sent to Bedrock (0: the API produces no output tokens)."""
    unbounded_input: bool = False
    """A document is attached: only the model's context window bounds the prompt."""
    capped_by_context: bool = True
    """False for embeddings: each input is embedded (and capped) on its own."""

    def output_tokens_for(self, entry: ModelEntry) -> int:
        return output_tokens_for(self.output, entry)

    def input_tokens_for(self, entry: ModelEntry) -> int:
        if not self.capped_by_context:
            return self.input_tokens
        if self.unbounded_input:
            return entry.context_window
        return min(self.input_tokens, entry.context_window)


def paid_api(path: str) -> str | None:
    """The API a paid model-call path serves (`openai.chat`, …), or None for no known one."""
    return _PAID_APIS.get(path)


MAX_NESTING_HEADROOM = 8
"""Levels of nesting kept free under the JSON writer's own limit (orjson writes at most 255):
a usage event, a Bedrock request, a batch of events wrap a body in a few more."""


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """A model call's body, parsed, with the size that bounds its tokens."""

    body: dict[str, Any]
    model: str
    size: int
    """The larger of its size as received and as written again: a float like `1e15` comes back
    as `1000000000000000.0`, in the Bedrock call as in this count."""


def parse_json_object(raw: bytes, model_message: str = "model is required") -> ParsedBody:
    """A request body that must be a JSON object naming a model.

    Refused too (400): a body nested so deeply that it could not be written again (the JSON
    reader takes deeper nesting than the writer), since the Bedrock call and the usage event
    are built from it.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BodyRefused("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BodyRefused("The request body must be a JSON object.", "body")
    model = body.get("model")
    if not isinstance(model, str) or model == "":
        raise BodyRefused(model_message, "model")
    wrapped: Any = body
    for _ in range(MAX_NESTING_HEADROOM):
        wrapped = [wrapped]
    try:
        written = len(orjson.dumps(wrapped)) - 2 * MAX_NESTING_HEADROOM
    except orjson.JSONEncodeError:
        raise BodyRefused("The request body is nested too deeply.", "body") from None
    return ParsedBody(body, model, max(len(raw), written))


def call_bound(api: str, body: dict[str, Any], model: str, body_size: int) -> CallBound:
    """The call's token bound for `api` (see `paid_api`), from its parsed body.

    `body_size` is the size in bytes of the body as received (however it was sent). Raises
    BodyRefused for a body the translator would refuse on the same fields.
    """
    reader = _READERS[api]
    return reader(body, model, body_size)


def _openai_chat(body: dict[str, Any], model: str, body_size: int) -> CallBound:
    ceiling = openai_output_ceiling(body)
    n = body.get("n")
    _refuse_unless(n is None or n == 1, "n > 1 is not supported by Bedrock", "n")
    image_chars, images = 0, 0
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        # Where the translator reads images: content parts of user turns (other roles take
        # text only). A part elsewhere that looks like an image is text to the model.
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        for part in content if isinstance(content, list) else ():
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            image_url = part.get("image_url")
            url = image_url.get("url") if isinstance(image_url, dict) else image_url
            if isinstance(url, str):
                image_chars += len(url)
                images += 1
    input_tokens = body_size - image_chars + images * IMAGE_TOKENS + OVERHEAD_TOKENS
    return CallBound(model, input_tokens, ceiling)


def _anthropic_messages(body: dict[str, Any], model: str, body_size: int) -> CallBound:
    max_tokens = body.get("max_tokens")
    _refuse_unless(_positive_int(max_tokens), "max_tokens: Field required (a positive integer)", "max_tokens")
    assert isinstance(max_tokens, int)
    media = _MediaCount()
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else ():
            media.add(block)
            if isinstance(block, dict) and block.get("type") == "tool_result":
                inner = block.get("content")
                for part in inner if isinstance(inner, list) else ():
                    media.add(part)
    defined_tools = 0
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict) and tool.get("type") not in (None, "custom"):
            defined_tools += 1
    input_tokens = (
        body_size
        - media.image_chars
        + media.images * IMAGE_TOKENS
        + defined_tools * DEFINED_TOOL_TOKENS
        + OVERHEAD_TOKENS
    )
    ceiling = OutputCeiling(max_tokens, None, explicit_max_tokens=True)
    return CallBound(model, input_tokens, ceiling, unbounded_input=media.documents > 0)


class _MediaCount:
    """Base64 media in Anthropic content blocks: images by count, documents as unbounded."""

    def __init__(self) -> None:
        self.images = 0
        self.image_chars = 0
        self.documents = 0

    def add(self, block: Any) -> None:
        if not isinstance(block, dict):
            return
        source = block.get("source")
        if not isinstance(source, dict):
            return
        data = source.get("data")
        if block.get("type") == "image" and source.get("type") == "base64" and isinstance(data, str):
            self.images += 1
            self.image_chars += len(data)
        elif block.get("type") != "image":
            # A document (base64 PDF, or any other source): its tokens are not bounded by
            # its bytes (compressed pages), only by the context window.
            self.documents += 1


def _openai_embeddings(body: dict[str, Any], model: str, body_size: int) -> CallBound:
    # Every input is text in the body: its bytes bound its tokens; nothing is generated.
    nothing = OutputCeiling(0, None, explicit_max_tokens=True)
    return CallBound(model, body_size + OVERHEAD_TOKENS, nothing, capped_by_context=False)


_READERS: dict[str, Callable[[dict[str, Any], str, int], CallBound]] = {
    "openai.chat": _openai_chat,
    "anthropic.messages": _anthropic_messages,
    "openai.embeddings": _openai_embeddings,
}


def input_price(entry: ModelEntry, prices: Prices) -> Decimal:
    """The most one prompt token can cost: Bedrock reports each as input, or, for a model that
    caches prompts, as a cache write or read."""
    if "caching" not in entry.capabilities:
        return prices.input
    return max(prices.input, prices.cache_write, prices.cache_read)


def bound_cost(bound: CallBound, entry: ModelEntry, prices: Prices) -> Decimal:
    """The most the call can cost in USD at `prices` (exact)."""
    input_tokens = bound.input_tokens_for(entry)
    output_tokens = bound.output_tokens_for(entry)
    return (input_tokens * input_price(entry, prices) + output_tokens * prices.output) / MILLION


@dataclass(frozen=True, slots=True)
class Admission:
    """What authz reserved a call for; it travels to the translator in the
    `core.internal_headers.ADMITTED` header."""

    cost: Decimal
    """USD reserved: the call's worst case at the prices authz saw."""
    output_tokens: int
    """The output ceiling the reservation covers."""

    def header_value(self) -> str:
        return f"{self.cost};{self.output_tokens}"

    @classmethod
    def parse(cls, value: str | None) -> Admission | None:
        """The header's admission, or None if it is missing or malformed."""
        if not value:
            return None
        cost, _, output = value.partition(";")
        try:
            admitted = cls(Decimal(cost), int(output))
        except (ArithmeticError, ValueError):
            return None
        if not admitted.cost.is_finite() or admitted.cost < 0 or admitted.output_tokens < 0:
            return None
        return admitted
