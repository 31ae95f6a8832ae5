"""What the simulated model answers: pure functions from a parsed request to a planned answer.

No I/O and no clock here; ``server.py`` turns a plan into bytes and paces it. One function per
operation (``converse`` for both Converse and ConverseStream, whose answers are identical and only
framed differently); InvokeModel, CountTokens, embeddings and the rest get functions of their own
beside it.

The answer
==========
The reply text is ``"Simulated answer to: <first 40 characters of the last user text>."``
followed by filler words, cut to the planned number of output tokens (the configured default,
or ``tokens=N``). One output "token" is one word with the whitespace before it (`` word``), so
the stream's ``contentBlockDelta`` texts, concatenated, equal the non-stream text exactly.

* ``stopReason`` is ``end_turn``; ``max_tokens`` when ``inferenceConfig.maxTokens`` is below the
  planned count (output, reasoning included, cut to ``maxTokens`` tokens); ``stop_sequence`` when one of
  ``inferenceConfig.stopSequences`` occurs in the text generated so far (text cut before it).
* ``usage.inputTokens`` is deterministic, not a real tokenizer: ``ceil(len(text) / 4)`` per text
  block of ``system`` and of every message, plus 3 per message (plus 3 for a non-empty system);
  non-text blocks count a fixed or JSON-length-based amount (see ``_block_tokens``). Directive
  text is counted like any other text. ``outputTokens`` is the number of tokens sent and
  ``totalTokens`` their sum.

Test directives
===============
Tests drive the simulator through the prompt, since a gateway forwards only that. Directives are
read from the text of the LAST ``user`` message (all its text blocks)::

    [[sim: tokens=5, error=ThrottlingException]]
    [[sim: stream_error=throttlingException after=3 latency_ms=200 no_usage]]

Items inside one ``[[sim: ...]]`` are separated by commas and/or spaces; several blocks are
merged, later values winning. Items:

``tokens=N``
    Plan N output tokens (1 to 100000) instead of the configured default.
``error=<ExceptionName>``
    Answer with that Bedrock error (its real HTTP status) instead of a reply, e.g.
    ``ThrottlingException`` (429), ``ModelTimeoutException`` (408), ``ValidationException`` (400).
    For ConverseStream it is an HTTP error before any event.
``stream_error=<exceptionName>`` and ``after=K``
    ConverseStream only: send K ``contentBlockDelta`` events (default 0, at most the planned
    count), then an exception message (``:message-type exception``) of that name, and end the
    stream without ``messageStop``/``metadata``. Names are the stream union's members:
    ``throttlingException``, ``modelStreamErrorException``, ``internalServerException``,
    ``serviceUnavailableException``, ``validationException`` (an upper-case first letter is
    accepted). Converse ignores it.
``corrupt_after=K``
    ConverseStream and InvokeModelWithResponseStream: send K ``contentBlockDelta`` events, then
    the next frame with a wrong checksum, and end the stream (a transport corrupting the body).
``disconnect_after=K``
    ConverseStream and InvokeModelWithResponseStream: send K ``contentBlockDelta`` events, then
    close the connection mid-answer (a network failure or a load balancer cutting it).
``latency_ms=N``
    Time to first byte for this call, overriding the configured latency.
``tokens_per_second=N``
    Pace this call's output at N tokens a second, overriding the configured rate (0 = unpaced).
``no_usage``
    ConverseStream only: omit the final ``metadata`` event, so usage is never reported.
``tool=<name>``
    Answer with a ``toolUse`` for that tool (one of the request's ``toolConfig.tools``), its
    ``input`` built from the tool's JSON schema (first enum value, ``"<property>-1"`` for strings,
    1 for integers, 1.5 for numbers, true, one-item arrays, nested objects). Repeat the item for
    parallel calls (``tool=a tool=b``). With ``tokens=N`` a text block of N tokens comes first;
    without it the answer is the tool calls alone. ``stopReason`` is ``tool_use``. A forced
    ``toolChoice`` (``any``: the first tool; ``tool``: that one) has the same effect without
    a directive.
``reasoning_tokens=N``
    When the request enables thinking (``additionalModelRequestFields.thinking.type`` ``enabled``
    or ``adaptive``), the reasoning block has N tokens (default 8).
``redacted``
    With thinking enabled, a ``redactedContent`` reasoning block comes before the readable one.

Tools, reasoning, cache points
==============================
* With thinking enabled, the answer starts with a ``reasoningContent`` block (``"Thinking about:
  <echo>"``) signed with ``signature_for(text)``. A reasoning block sent back in the history
  must carry that signature (redacted data must be what the simulator produced), else the call
  is a ValidationException naming it, as Bedrock refuses a tampered thinking block. While
  thinking, a final assistant turn that called tools must start with its reasoning block, and a
  forced ``toolChoice`` is refused, as Claude's are.
* ``toolUse``/``toolResult`` blocks need a ``toolConfig``; each ``toolResult`` must answer a
  ``toolUse`` of the assistant turn before it.
* Images must have a known ``format`` (png, jpeg, gif, webp) and valid base64 ``bytes``.
* Prompt caching: the tokens before the last ``cachePoint`` (tools, then system, then messages,
  in that order) are the cached prefix. The first call with a given prefix reports them as
  ``cacheWriteInputTokens``, later calls as ``cacheReadInputTokens`` (the prefix cache is the
  ``PromptCache`` the server passes in); ``inputTokens`` is the rest.

An unknown item or a bad value is answered with a ``ValidationException`` naming it, so a typo
in a test fails loudly instead of being ignored. Directives are stripped from the echoed text
only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from .errors import BEDROCK_ERROR_STATUS, FRONT_DOOR_ERROR_STATUS, STREAM_EXCEPTIONS, SimulatedError

__all__ = [
    "ConverseAnswer",
    "Directives",
    "OutputBlock",
    "PromptCache",
    "Usage",
    "converse",
    "count_input_tokens",
    "parse_directives",
    "redacted_data",
    "signature_for",
    "split_tokens",
]

MAX_PLANNED_TOKENS = 100_000
_ECHO_CHARS = 40
_MESSAGE_OVERHEAD_TOKENS = 3
# Fixed charge for media blocks: counting their base64 length would dwarf everything else and
# mean nothing; a constant keeps usage deterministic and roughly the size real models report.
_MEDIA_BLOCK_TOKENS = 256
_MEDIA_BLOCKS = frozenset({"image", "document", "video", "audio"})
_IMAGE_FORMATS = frozenset({"png", "jpeg", "gif", "webp"})
_DEFAULT_REASONING_TOKENS = 8
_TOOL_INPUT_FRAGMENT = 10
"""Characters of tool-input JSON per streamed delta."""

_DIRECTIVE_RE = re.compile(r"\[\[sim:(.*?)\]\]", re.DOTALL)
_DIRECTIVE_MARKER = "[[sim:"
_ITEM_SPLIT_RE = re.compile(r"[\s,]+")
_TOKEN_RE = re.compile(r"\s*\S+|\s+")

_FILLER_WORDS = (
    "The",
    "simulator",
    "keeps",
    "talking",
    "so",
    "that",
    "every",
    "answer",
    "has",
    "the",
    "planned",
    "number",
    "of",
    "output",
    "tokens",
    "here.",
)
_FILLER_CHUNKS = tuple(" " + word for word in _FILLER_WORDS)

_INVALID_INPUT = "Malformed input request, please reformat your input and try again."
_FIRST_MUST_BE_USER = (
    "A conversation must start with a user message. Try again with a conversation that starts with a user "
    "message."
)
_MUST_ALTERNATE = (
    "A conversation must alternate between user and assistant roles. Make sure the conversation alternates "
    "between user and assistant roles and try again."
)
_NEEDS_TOOL_CONFIG = "The toolConfig field must be defined when using toolUse and toolResult content blocks."
_SIGNATURE_SALT = b"brproxy-simulator-thinking:"
_REDACTED_PREFIX = b"brproxy-simulator-redacted:"


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens

    def as_dict(self) -> dict[str, int]:
        """Bedrock's ``usage`` object (cache fields only when the prompt had a cache point)."""
        usage = {
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "totalTokens": self.total_tokens,
        }
        if self.cache_read_tokens or self.cache_write_tokens:
            usage["cacheReadInputTokens"] = self.cache_read_tokens
            usage["cacheWriteInputTokens"] = self.cache_write_tokens
        return usage


@dataclass(frozen=True, slots=True)
class Directives:
    """Parsed ``[[sim: ...]]`` items; None means "not given, use the configured behaviour"."""

    tokens: int | None = None
    error: str | None = None
    stream_error: str | None = None
    after: int = 0
    corrupt_after: int | None = None
    disconnect_after: int | None = None
    latency_ms: float | None = None
    tokens_per_second: float | None = None
    no_usage: bool = False
    tools: tuple[str, ...] = ()
    reasoning_tokens: int | None = None
    redacted: bool = False


NO_DIRECTIVES = Directives()


@dataclass(frozen=True, slots=True)
class OutputBlock:
    """One content block of the answer.

    ``kind`` is ``text``, ``reasoning`` (``chunks`` are its text tokens, then ``signature``),
    ``redacted`` (``data``, base64) or ``tool`` (``chunks`` are fragments of the input JSON).
    """

    kind: str
    chunks: tuple[str, ...] = ()
    signature: str = ""
    data: str = ""
    tool_use_id: str = ""
    name: str = ""
    input: Any = None

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def converse(self) -> dict[str, Any]:
        """The block as a Converse ``ContentBlock``."""
        if self.kind == "text":
            return {"text": self.text}
        if self.kind == "reasoning":
            return {"reasoningContent": {"reasoningText": {"text": self.text, "signature": self.signature}}}
        if self.kind == "redacted":
            return {"reasoningContent": {"redactedContent": self.data}}
        return {"toolUse": {"toolUseId": self.tool_use_id, "name": self.name, "input": self.input}}


@dataclass(frozen=True, slots=True)
class ConverseAnswer:
    """The planned reply of Converse / ConverseStream."""

    chunks: tuple[str, ...]
    """Tokens of the text block in order; ``"".join(chunks)`` is the reply text."""
    stop_reason: str
    usage: Usage
    directives: Directives = field(default=NO_DIRECTIVES)
    blocks: tuple[OutputBlock, ...] = ()
    """Every content block in order (the text block among them)."""
    stop_sequence: str | None = None
    """The stop sequence that ended the answer, if one did."""

    @property
    def text(self) -> str:
        return "".join(self.chunks)


class PromptCache:
    """Prompt prefixes seen so far (bounded, least recently used first out)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._capacity = capacity

    def seen_before(self, key: bytes) -> bool:
        """Whether the prefix was cached already; it is cached from now on either way."""
        if key in self._seen:
            self._seen.move_to_end(key)
            return True
        self._seen[key] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return False


def signature_for(text: str) -> str:
    """The signature the simulator gives a reasoning text (and checks when it comes back)."""
    return base64.b64encode(hashlib.sha256(_SIGNATURE_SALT + text.encode()).digest()).decode()


def redacted_data(seed: str) -> str:
    """Opaque redacted-reasoning data the simulator recognises as its own."""
    return base64.b64encode(_REDACTED_PREFIX + hashlib.sha256(seed.encode()).hexdigest().encode()).decode()


# ---------------------------------------------------------------------------------------------
# Directives


def _positive_int(name: str, raw: str | None, upper: int) -> int:
    if raw is None or not raw.isdigit() or not 1 <= int(raw) <= upper:
        raise SimulatedError(
            "ValidationException", f"Simulator directive {name} needs an integer 1..{upper}."
        )
    return int(raw)


def _non_negative_int(name: str, raw: str | None) -> int:
    if raw is None or not raw.isdigit():
        raise SimulatedError("ValidationException", f"Simulator directive {name} needs an integer >= 0.")
    return int(raw)


def _set_tokens(d: Directives, raw: str | None) -> Directives:
    return replace(d, tokens=_positive_int("tokens", raw, MAX_PLANNED_TOKENS))


def _set_error(d: Directives, raw: str | None) -> Directives:
    if raw not in BEDROCK_ERROR_STATUS and raw not in FRONT_DOOR_ERROR_STATUS:
        known = ", ".join(sorted(BEDROCK_ERROR_STATUS))
        raise SimulatedError("ValidationException", f"Simulator directive error={raw}: use one of {known}.")
    return replace(d, error=raw)


def _set_stream_error(d: Directives, raw: str | None) -> Directives:
    name = raw[:1].lower() + raw[1:] if raw else raw
    if name not in STREAM_EXCEPTIONS:
        known = ", ".join(sorted(STREAM_EXCEPTIONS))
        raise SimulatedError(
            "ValidationException", f"Simulator directive stream_error={raw}: use one of {known}."
        )
    return replace(d, stream_error=name)


def _set_after(d: Directives, raw: str | None) -> Directives:
    return replace(d, after=_non_negative_int("after", raw))


def _set_corrupt_after(d: Directives, raw: str | None) -> Directives:
    return replace(d, corrupt_after=_non_negative_int("corrupt_after", raw))


def _set_disconnect_after(d: Directives, raw: str | None) -> Directives:
    return replace(d, disconnect_after=_non_negative_int("disconnect_after", raw))


def _set_latency(d: Directives, raw: str | None) -> Directives:
    return replace(d, latency_ms=float(_non_negative_int("latency_ms", raw)))


def _set_tokens_per_second(d: Directives, raw: str | None) -> Directives:
    return replace(d, tokens_per_second=float(_non_negative_int("tokens_per_second", raw)))


def _flag(name: str, raw: str | None) -> None:
    if raw is not None:
        raise SimulatedError("ValidationException", f"Simulator directive {name} takes no value.")


def _set_no_usage(d: Directives, raw: str | None) -> Directives:
    _flag("no_usage", raw)
    return replace(d, no_usage=True)


def _set_tool(d: Directives, raw: str | None) -> Directives:
    if not raw:
        raise SimulatedError("ValidationException", "Simulator directive tool needs a tool name.")
    return replace(d, tools=(*d.tools, raw))


def _set_reasoning_tokens(d: Directives, raw: str | None) -> Directives:
    return replace(d, reasoning_tokens=_positive_int("reasoning_tokens", raw, MAX_PLANNED_TOKENS))


def _set_redacted(d: Directives, raw: str | None) -> Directives:
    _flag("redacted", raw)
    return replace(d, redacted=True)


# A new directive is one entry here plus a field on Directives.
_DIRECTIVE_SETTERS: dict[str, Callable[[Directives, str | None], Directives]] = {
    "tokens": _set_tokens,
    "error": _set_error,
    "stream_error": _set_stream_error,
    "after": _set_after,
    "corrupt_after": _set_corrupt_after,
    "disconnect_after": _set_disconnect_after,
    "latency_ms": _set_latency,
    "tokens_per_second": _set_tokens_per_second,
    "no_usage": _set_no_usage,
    "tool": _set_tool,
    "reasoning_tokens": _set_reasoning_tokens,
    "redacted": _set_redacted,
}


def parse_directives(text: str) -> Directives:
    """Read every ``[[sim: ...]]`` block of ``text``; raise ValidationException on a bad item."""
    if _DIRECTIVE_MARKER not in text:
        return NO_DIRECTIVES
    directives = NO_DIRECTIVES
    for body in _DIRECTIVE_RE.findall(text):
        for item in _ITEM_SPLIT_RE.split(body.strip()):
            if not item:
                continue
            name, sep, value = item.partition("=")
            setter = _DIRECTIVE_SETTERS.get(name)
            if setter is None:
                known = ", ".join(_DIRECTIVE_SETTERS)
                raise SimulatedError(
                    "ValidationException", f"Unknown simulator directive {name!r}; known: {known}."
                )
            directives = setter(directives, value if sep else None)
    return directives


# ---------------------------------------------------------------------------------------------
# Request reading and validation


def _validation(message: str) -> SimulatedError:
    return SimulatedError("ValidationException", message)


def _validate_image(image: Any, where: str) -> None:
    if not isinstance(image, dict) or image.get("format") not in _IMAGE_FORMATS:
        raise _validation(f"The image at {where} must have a format of png, jpeg, gif or webp.")
    source = image.get("source")
    data = source.get("bytes") if isinstance(source, dict) else None
    try:
        if not isinstance(data, str) or not base64.b64decode(data, validate=True):
            raise ValueError
    except (binascii.Error, ValueError):
        raise _validation(f"The image at {where} has no valid base64 bytes.") from None


def _validate_reasoning(reasoning: Any, where: str) -> None:
    if not isinstance(reasoning, dict):
        raise _validation(f"The reasoningContent at {where} must be an object.")
    if "redactedContent" in reasoning:
        try:
            raw = base64.b64decode(str(reasoning["redactedContent"]), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if not raw.startswith(_REDACTED_PREFIX):
            raise _validation(f"The redacted reasoning at {where} was not produced for this conversation.")
        return
    text_block = reasoning.get("reasoningText")
    text = text_block.get("text") if isinstance(text_block, dict) else None
    signature = text_block.get("signature") if isinstance(text_block, dict) else None
    if not isinstance(text, str) or signature != signature_for(text):
        raise _validation(
            f"The reasoning at {where} has an invalid signature: thinking blocks must be sent back "
            "exactly as received (the signature is bound to a different conversation)."
        )


def _validate_content(content: Any, where: str) -> None:
    if not isinstance(content, list) or not content:
        raise _validation(
            f"The content field in the Message object at {where} is empty. Add a ContentBlock object to the "
            "content field and try again."
        )
    for index, block in enumerate(content):
        if not isinstance(block, dict) or not block:
            raise _validation(f"The content block at {where}.content.{index} must be a non-empty object.")
        text = block.get("text")
        if text is not None and not isinstance(text, str):
            raise _validation(f"The text at {where}.content.{index} must be a string.")
        if "image" in block:
            _validate_image(block["image"], f"{where}.content.{index}")
        elif "reasoningContent" in block:
            _validate_reasoning(block["reasoningContent"], f"{where}.content.{index}")


def _tool_ids(message: Mapping[str, Any], kind: str, key: str) -> list[str]:
    return [str(block[kind].get(key)) for block in message["content"] if isinstance(block.get(kind), dict)]


def _validate_tool_turns(messages: list[dict[str, Any]], tool_config: Any) -> None:
    previous_uses: list[str] = []
    for index, message in enumerate(messages):
        uses = _tool_ids(message, "toolUse", "toolUseId")
        results = _tool_ids(message, "toolResult", "toolUseId")
        if (uses or results) and not tool_config:
            raise _validation(_NEEDS_TOOL_CONFIG)
        for result in results:
            if result not in previous_uses:
                raise _validation(
                    f"The toolResult at messages.{index} answers toolUseId {result}, which is not a toolUse "
                    "of the previous assistant turn."
                )
        previous_uses = uses


def _thinking(request: Mapping[str, Any]) -> bool:
    fields = request.get("additionalModelRequestFields")
    thinking = fields.get("thinking") if isinstance(fields, dict) else None
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _validate_converse(request: Any) -> tuple[list[dict[str, Any]], list[Any], dict[str, Any]]:
    """Check the parts Bedrock checks; return (messages, system, inferenceConfig)."""
    if not isinstance(request, dict):
        raise _validation(_INVALID_INPUT)
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _validation("The messages field must be a non-empty list of messages.")
    expected_role = "user"
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _validation(_INVALID_INPUT)
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise _validation(f"The role at messages.{index}.role must be 'user' or 'assistant'.")
        if role != expected_role:
            raise _validation(_FIRST_MUST_BE_USER if index == 0 else _MUST_ALTERNATE)
        _validate_content(message.get("content"), f"messages.{index}")
        expected_role = "assistant" if role == "user" else "user"
    _validate_tool_turns(messages, request.get("toolConfig"))

    system = request.get("system")
    if system is None:
        system = []
    elif not isinstance(system, list) or not all(isinstance(block, dict) for block in system):
        raise _validation("The system field must be a list of SystemContentBlock objects.")

    config = request.get("inferenceConfig")
    if config is None:
        config = {}
    elif not isinstance(config, dict):
        raise _validation("The inferenceConfig field must be an object.")
    max_tokens = config.get("maxTokens")
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
    ):
        raise _validation("The maximum tokens you requested must be an integer greater than or equal to 1.")
    stops = config.get("stopSequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise _validation("The stopSequences field must be a list of strings.")
    for name in ("temperature", "topP"):
        value = config.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1
        ):
            raise _validation(f"The value of {name} must be a number between 0 and 1.")
    return messages, system, config


def _block_tokens(block: Mapping[str, Any]) -> int:
    text = block.get("text")
    if isinstance(text, str):
        return (len(text) + 3) // 4
    if "cachePoint" in block:
        return 0
    for name in block:
        if name in _MEDIA_BLOCKS:
            return _MEDIA_BLOCK_TOKENS
    # toolUse, toolResult, reasoningContent, toolSpec ...: size of their JSON, so that bigger
    # structures cost more while the count stays deterministic.
    try:
        return (len(orjson.dumps(block)) + 3) // 4
    except TypeError:
        return 1


def _tool_specs(request: Mapping[str, Any]) -> list[Any]:
    config = request.get("toolConfig")
    tools = config.get("tools") if isinstance(config, dict) else None
    return tools if isinstance(tools, list) else []


def count_input_tokens(
    system: Sequence[Mapping[str, Any]],
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] = (),
) -> int:
    """The deterministic input-token count described in the module docstring."""
    total = _MESSAGE_OVERHEAD_TOKENS if system else 0
    for tool in tools:
        total += _block_tokens(tool)
    for block in system:
        total += _block_tokens(block)
    for message in messages:
        total += _MESSAGE_OVERHEAD_TOKENS
        for block in message["content"]:
            total += _block_tokens(block)
    return total


def _cached_prefix(
    tools: Sequence[Mapping[str, Any]],
    system: Sequence[Mapping[str, Any]],
    messages: Sequence[Mapping[str, Any]],
) -> tuple[int, bytes] | None:
    """(tokens, identity) of everything before the last cache point, or None without one."""
    every = (tools, system, *(m["content"] for m in messages))
    if not any("cachePoint" in block for blocks in every for block in blocks):
        return None  # the common case, kept cheap
    prefix_tokens = 0
    seen: list[Any] = []
    found: tuple[int, int] | None = None  # (tokens, items) up to the last cache point

    def walk(blocks: Sequence[Mapping[str, Any]], overhead: int) -> None:
        nonlocal prefix_tokens, found
        prefix_tokens += overhead
        for block in blocks:
            if "cachePoint" in block:
                found = (prefix_tokens, len(seen))
                continue
            prefix_tokens += _block_tokens(block)
            seen.append(block)

    walk(tools, 0)
    walk(system, _MESSAGE_OVERHEAD_TOKENS if system else 0)
    for message in messages:
        seen.append(message["role"])
        walk(message["content"], _MESSAGE_OVERHEAD_TOKENS)
    if found is None:
        return None
    tokens, items = found
    return tokens, hashlib.sha256(orjson.dumps(seen[:items])).digest()


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            return " ".join(
                block["text"] for block in message["content"] if isinstance(block.get("text"), str)
            )
    return ""


# ---------------------------------------------------------------------------------------------
# Output planning


def split_tokens(text: str) -> tuple[str, ...]:
    """Cut text into output tokens: each word with the whitespace before it (concatenation is lossless)."""
    return tuple(_TOKEN_RE.findall(text))


def _echo(last_user_text: str) -> str:
    return " ".join(_DIRECTIVE_RE.sub(" ", last_user_text).split())[:_ECHO_CHARS].rstrip()


def _tool_tokens(block: OutputBlock) -> int:
    """A tool call's output tokens: a quarter of its input's JSON."""
    return (len(orjson.dumps(block.input)) + 3) // 4


def _plan_chunks(last_user_text: str, count: int, lead: str = "Simulated answer to:") -> list[str]:
    echo = _echo(last_user_text)
    words = [*lead.split(), *echo.split()] if echo else lead.split()[:2]
    words[-1] += "."
    chunks = [words[0]]
    chunks.extend(" " + word for word in words[1:count])
    filler = len(_FILLER_CHUNKS)
    chunks.extend(_FILLER_CHUNKS[i % filler] for i in range(count - len(chunks)))
    return chunks


def _sample(schema: Any, name: str) -> Any:
    """A value that fits a JSON schema, deterministic (what the simulated model "chooses")."""
    if not isinstance(schema, dict):
        return f"{name}-1"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {key: _sample(value, key) for key, value in properties.items()}
    if kind == "array":
        return [_sample(schema.get("items"), name)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return f"{name}-1"


def _tool_calls(request: Mapping[str, Any], directives: Directives, seed: str) -> list[OutputBlock]:
    specs: dict[str, Any] = {}
    for tool in _tool_specs(request):
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            schema = spec.get("inputSchema")
            specs[spec["name"]] = schema.get("json") if isinstance(schema, dict) else None
    names = list(directives.tools)
    if not names:
        config = request.get("toolConfig")
        choice = config.get("toolChoice") if isinstance(config, dict) else None
        if isinstance(choice, dict) and "any" in choice and specs:
            names = [next(iter(specs))]
        elif isinstance(choice, dict) and isinstance(choice.get("tool"), dict):
            names = [str(choice["tool"].get("name"))]
    blocks = []
    for index, name in enumerate(names):
        if name not in specs:
            raise _validation(f"Simulator: tool {name!r} is not in the request's toolConfig.tools.")
        value = _sample(specs[name], name)
        encoded = orjson.dumps(value).decode()
        fragments = tuple(
            encoded[i : i + _TOOL_INPUT_FRAGMENT] for i in range(0, len(encoded), _TOOL_INPUT_FRAGMENT)
        )
        digest = hashlib.sha256(f"{seed}:{index}:{name}".encode()).hexdigest()[:22]
        blocks.append(OutputBlock("tool", fragments, tool_use_id=f"tooluse_{digest}", name=name, input=value))
    return blocks


def _validate_thinking_turns(request: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> None:
    config = request.get("toolConfig")
    choice = config.get("toolChoice") if isinstance(config, dict) else None
    if isinstance(choice, dict) and ("any" in choice or "tool" in choice):
        raise _validation("Thinking may not be enabled when tool_choice forces tool use.")
    assistants = [m for m in messages if m["role"] == "assistant"]
    last = assistants[-1] if assistants else None
    called_tools = last is not None and _tool_ids(last, "toolUse", "toolUseId")
    if called_tools and last is not None and "reasoningContent" not in last["content"][0]:
        raise _validation(
            "Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is "
            "enabled, a final `assistant` message must start with a thinking block."
        )


def _cut_at_stop(chunks: list[str], stops: Any) -> tuple[list[str], str | None]:
    if not stops:
        return chunks, None
    text = "".join(chunks)
    found = [(i, s) for s in stops if s for i in (text.find(s),) if i >= 0]
    if not found:
        return chunks, None
    cut, stop = min(found)
    return list(split_tokens(text[:cut])), stop


def converse(
    request: Any,
    *,
    default_output_tokens: int,
    cache: PromptCache | None = None,
    context_window: int | None = None,
) -> ConverseAnswer:
    """Plan the answer to a Converse or ConverseStream request body (already JSON-decoded).

    Raises ``SimulatedError`` for an invalid request, for a prompt longer than the model's
    ``context_window`` (as Bedrock refuses one), and for an ``error=`` directive.
    """
    messages, system, config = _validate_converse(request)
    last_user_text = _last_user_text(messages)
    directives = parse_directives(last_user_text)
    if directives.error is not None:
        raise SimulatedError(directives.error)
    thinking = _thinking(request)
    if thinking:
        _validate_thinking_turns(request, messages)

    # maxTokens bounds every output token, thinking included, as Bedrock's models count it.
    max_tokens = config.get("maxTokens")
    room = max_tokens if max_tokens is not None else MAX_PLANNED_TOKENS * 4
    blocks: list[OutputBlock] = []
    if thinking:
        if directives.redacted:
            blocks.append(OutputBlock("redacted", data=redacted_data(last_user_text)))
            room -= 1
        count = min(directives.reasoning_tokens or _DEFAULT_REASONING_TOKENS, max(room, 1))
        reasoning = tuple(_plan_chunks(last_user_text, count, "Thinking about:"))
        blocks.append(OutputBlock("reasoning", reasoning, signature=signature_for("".join(reasoning))))
        room -= len(reasoning)
    tool_calls = _tool_calls(request, directives, f"{len(messages)}:{last_user_text}")

    stop_reason = "end_turn"
    stop_sequence = None
    chunks: list[str] = []
    if not tool_calls or directives.tokens is not None:
        planned = directives.tokens if directives.tokens is not None else default_output_tokens
        chunks = _plan_chunks(last_user_text, planned)
        if room < len(chunks):
            del chunks[max(room, 0) :]
            stop_reason = "max_tokens"
            tool_calls = []
        # Stop sequences are looked for only in what was generated within maxTokens, as a model would.
        chunks, stop_sequence = _cut_at_stop(chunks, config.get("stopSequences"))
        if stop_sequence is not None:
            stop_reason = "stop_sequence"
            tool_calls = []
        blocks.append(OutputBlock("text", tuple(chunks)))
    # Tool calls are output too: a model that runs out of room stops before (or in) them.
    if tool_calls and room - len(chunks) < sum(_tool_tokens(call) for call in tool_calls):
        tool_calls = []
        stop_reason = "max_tokens"
    if tool_calls:
        blocks.extend(tool_calls)
        stop_reason = "tool_use"

    output = sum(
        _tool_tokens(b) if b.kind == "tool" else len(b.chunks) or 1 for b in blocks if b.kind != "text"
    ) + len(chunks)
    tools = _tool_specs(request)
    input_tokens = count_input_tokens(system, messages, tools)
    if context_window is not None and input_tokens > context_window:
        raise SimulatedError(
            "ValidationException", f"prompt is too long: {input_tokens} tokens > {context_window} maximum"
        )
    cache_read = cache_write = 0
    prefix = _cached_prefix(tools, system, messages)
    if prefix is not None and cache is not None:
        tokens, key = prefix
        if cache.seen_before(key):
            cache_read = tokens
        else:
            cache_write = tokens
        input_tokens -= tokens
    usage = Usage(input_tokens, output, cache_read, cache_write)
    return ConverseAnswer(
        chunks=tuple(chunks),
        stop_reason=stop_reason,
        usage=usage,
        directives=directives,
        blocks=tuple(blocks),
        stop_sequence=stop_sequence,
    )
