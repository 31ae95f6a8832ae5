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
  planned count (output cut to ``maxTokens`` tokens); ``stop_sequence`` when one of
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
``latency_ms=N``
    Time to first byte for this call, overriding the configured latency.
``tokens_per_second=N``
    Pace this call's output at N tokens a second, overriding the configured rate (0 = unpaced).
``no_usage``
    ConverseStream only: omit the final ``metadata`` event, so usage is never reported.

An unknown item or a bad value is answered with a ``ValidationException`` naming it, so a typo
in a test fails loudly instead of being ignored. Directives are stripped from the echoed text
only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from .errors import BEDROCK_ERROR_STATUS, FRONT_DOOR_ERROR_STATUS, STREAM_EXCEPTIONS, SimulatedError

__all__ = [
    "ConverseAnswer",
    "Directives",
    "Usage",
    "converse",
    "count_input_tokens",
    "parse_directives",
    "split_tokens",
]

MAX_PLANNED_TOKENS = 100_000
_ECHO_CHARS = 40
_MESSAGE_OVERHEAD_TOKENS = 3
# Fixed charge for media blocks: counting their base64 length would dwarf everything else and
# mean nothing; a constant keeps usage deterministic and roughly the size real models report.
_MEDIA_BLOCK_TOKENS = 256
_MEDIA_BLOCKS = frozenset({"image", "document", "video", "audio"})

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


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def as_dict(self) -> dict[str, int]:
        """Bedrock's ``usage`` object."""
        return {
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "totalTokens": self.input_tokens + self.output_tokens,
        }


@dataclass(frozen=True, slots=True)
class Directives:
    """Parsed ``[[sim: ...]]`` items; None means "not given, use the configured behaviour"."""

    tokens: int | None = None
    error: str | None = None
    stream_error: str | None = None
    after: int = 0
    latency_ms: float | None = None
    tokens_per_second: float | None = None
    no_usage: bool = False


NO_DIRECTIVES = Directives()


@dataclass(frozen=True, slots=True)
class ConverseAnswer:
    """The planned reply of Converse / ConverseStream."""

    chunks: tuple[str, ...]
    """Output tokens in order; ``"".join(chunks)`` is the reply text."""
    stop_reason: str
    usage: Usage
    directives: Directives = field(default=NO_DIRECTIVES)

    @property
    def text(self) -> str:
        return "".join(self.chunks)


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


def _set_latency(d: Directives, raw: str | None) -> Directives:
    return replace(d, latency_ms=float(_non_negative_int("latency_ms", raw)))


def _set_tokens_per_second(d: Directives, raw: str | None) -> Directives:
    return replace(d, tokens_per_second=float(_non_negative_int("tokens_per_second", raw)))


def _set_no_usage(d: Directives, raw: str | None) -> Directives:
    if raw is not None:
        raise SimulatedError("ValidationException", "Simulator directive no_usage takes no value.")
    return replace(d, no_usage=True)


# A new directive is one entry here plus a field on Directives.
_DIRECTIVE_SETTERS: dict[str, Callable[[Directives, str | None], Directives]] = {
    "tokens": _set_tokens,
    "error": _set_error,
    "stream_error": _set_stream_error,
    "after": _set_after,
    "latency_ms": _set_latency,
    "tokens_per_second": _set_tokens_per_second,
    "no_usage": _set_no_usage,
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
    for name in block:
        if name in _MEDIA_BLOCKS:
            return _MEDIA_BLOCK_TOKENS
    # toolUse, toolResult, reasoningContent, cachePoint, ...: size of their JSON, so that bigger
    # structures cost more while the count stays deterministic.
    try:
        return (len(orjson.dumps(block)) + 3) // 4
    except TypeError:
        return 1


def count_input_tokens(system: Sequence[Mapping[str, Any]], messages: Sequence[Mapping[str, Any]]) -> int:
    """The deterministic input-token count described in the module docstring."""
    total = _MESSAGE_OVERHEAD_TOKENS if system else 0
    for block in system:
        total += _block_tokens(block)
    for message in messages:
        total += _MESSAGE_OVERHEAD_TOKENS
        for block in message["content"]:
            total += _block_tokens(block)
    return total


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


def _plan_chunks(last_user_text: str, count: int) -> list[str]:
    echo = " ".join(_DIRECTIVE_RE.sub(" ", last_user_text).split())[:_ECHO_CHARS].rstrip()
    words = ["Simulated", "answer", "to:", *echo.split()] if echo else ["Simulated", "answer"]
    words[-1] += "."
    chunks = [words[0]]
    chunks.extend(" " + word for word in words[1:count])
    filler = len(_FILLER_CHUNKS)
    chunks.extend(_FILLER_CHUNKS[i % filler] for i in range(count - len(chunks)))
    return chunks


def converse(request: Any, *, default_output_tokens: int) -> ConverseAnswer:
    """Plan the answer to a Converse or ConverseStream request body (already JSON-decoded).

    Raises ``SimulatedError`` for an invalid request and for an ``error=`` directive.
    """
    messages, system, config = _validate_converse(request)
    last_user_text = _last_user_text(messages)
    directives = parse_directives(last_user_text)
    if directives.error is not None:
        raise SimulatedError(directives.error)

    planned = directives.tokens if directives.tokens is not None else default_output_tokens
    chunks = _plan_chunks(last_user_text, planned)
    stop_reason = "end_turn"
    max_tokens = config.get("maxTokens")
    if max_tokens is not None and max_tokens < len(chunks):
        del chunks[max_tokens:]
        stop_reason = "max_tokens"
    # Stop sequences are looked for only in what was generated within maxTokens, as a model would.
    stops = config.get("stopSequences")
    if stops:
        text = "".join(chunks)
        cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
        if cut >= 0:
            chunks = list(split_tokens(text[:cut]))
            stop_reason = "stop_sequence"

    usage = Usage(input_tokens=count_input_tokens(system, messages), output_tokens=len(chunks))
    return ConverseAnswer(chunks=tuple(chunks), stop_reason=stop_reason, usage=usage, directives=directives)
