"""Anthropic Messages ⇄ Bedrock InvokeModel for Claude: pure conversion, one object per request.

Bedrock takes Anthropic's Messages body almost verbatim, so this pair mostly *bridges*:

- `AnthropicRequest.parse` validates the client's body and names the offending field.
- `to_bedrock` builds the InvokeModel body: no `model` or `stream`, `anthropic_version:
  "bedrock-2023-05-31"`, and `anthropic_beta` from the `anthropic-beta` header narrowed to the
  betas Bedrock accepts for that model (the catalogue's `betas`). A dropped beta takes the body
  fields it gates with it (`context_management`, `output_config.effort`/`format`/
  `task_budget`, tool `strict`/`defer_loading`/`input_examples`), and fields Bedrock refuses
  outright (`metadata`, `service_tier`, `container`, `mcp_servers`, …) are removed: sending
  either would be a hard 400 where the client expects a feature to be quietly off.
- `message_body` and `AnthropicStream` turn Bedrock's answer (Anthropic's message object,
  or the stream's Anthropic events) into exactly what Anthropic's API sends, with the
  client's model name, `event:` lines, a `ping` after `message_start`, and Bedrock's
  `amazon-bedrock-invocationMetrics` taken off `message_stop` (it feeds the meter instead).

Nothing here does I/O.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from core.catalogue import ModelEntry
from core.errors import anthropic_error
from translator.converse_helpers import (
    IMAGE_MEDIA_TYPES,
    InvalidRequest,
    TokenUsage,
    check_image_data,
    json_body,
    require,
)

__all__ = [
    "BEDROCK_ANTHROPIC_VERSION",
    "AnthropicRequest",
    "AnthropicStream",
    "AnthropicUsage",
    "count_tokens_body",
    "message_body",
    "parse_betas",
    "sse_frame",
]

BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"
COUNT_TOKENS_MAX_TOKENS = 1024
"""CountTokens needs a complete InvokeModel body, `max_tokens` included (it is not counted)."""

# Top-level fields Bedrock's InvokeModel accepts for Claude; anything else is dropped.
_BEDROCK_FIELDS = frozenset(
    {
        "max_tokens",
        "messages",
        "system",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "context_management",
    }
)
_EFFORT_BETA = "effort-2025-11-24"
_CONTEXT_MANAGEMENT_BETA = "context-management-2025-06-27"
_TOOL_SEARCH_BETA = "tool-search-tool-2025-10-19"
# Keys of a custom tool Bedrock accepts; the others are pre-release fields gated by betas
# Bedrock does not take (`strict`, `defer_loading`, `input_examples`, `allowed_callers`, ...).
_TOOL_KEYS = frozenset({"type", "name", "description", "input_schema", "cache_control"})
_ROLES = ("user", "assistant")
_SOURCE_BLOCKS = frozenset({"image", "document"})


def parse_betas(header_values: Iterable[str]) -> list[str]:
    """The `anthropic-beta` header's flags (comma lists, possibly several header lines), in order."""
    betas: list[str] = []
    for value in header_values:
        for flag in value.split(","):
            flag = flag.strip()
            if flag and flag not in betas:
                betas.append(flag)
    return betas


def sse_frame(event: dict[str, Any]) -> bytes:
    """One Anthropic SSE frame: `event: <type>` matching `data.type`, as both SDKs require."""
    return b"event: " + str(event.get("type", "")).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


PING_FRAME = sse_frame({"type": "ping"})


def _check_source(block: dict[str, Any], param: str) -> None:
    source = block.get("source")
    if not isinstance(source, dict):
        raise InvalidRequest("source is required", f"{param}.source")
    kind = source.get("type")
    if kind in ("url", "file"):
        # Fetching URLs server-side would let any key make the gateway request internal hosts,
        # and Bedrock has no Files API.
        raise InvalidRequest(
            f"{block['type']} sources of type {kind!r} are not supported by this gateway; send the data "
            "inline as base64.",
            f"{param}.source.type",
        )
    if block["type"] == "image" and kind == "base64":
        require(
            source.get("media_type") in IMAGE_MEDIA_TYPES,
            "unsupported image media_type (image/png, image/jpeg, image/gif, image/webp)",
            f"{param}.source.media_type",
        )
        check_image_data(source.get("data"), f"{param}.source.data")


def _check_content(content: Any, param: str, role: str, last: bool) -> None:
    if isinstance(content, str):
        # A final assistant turn is a prefill and may be empty; any other turn must say something.
        require(content != "" or (role == "assistant" and last), "content must not be empty", param)
        return
    require(isinstance(content, list), "content must be a string or a list of content blocks", param)
    require(len(content) > 0 or (role == "assistant" and last), "content must not be empty", param)
    for index, block in enumerate(content):
        p = f"{param}.{index}"
        require(isinstance(block, dict) and isinstance(block.get("type"), str), "each block needs a type", p)
        kind = block["type"]
        if kind == "text":
            require(isinstance(block.get("text"), str), "text must be a string", f"{p}.text")
        elif kind in _SOURCE_BLOCKS:
            _check_source(block, p)
        elif kind == "tool_result":
            require(isinstance(block.get("tool_use_id"), str), "tool_use_id is required", f"{p}.tool_use_id")
            inner = block.get("content")
            if isinstance(inner, list):
                for j, part in enumerate(inner):
                    if isinstance(part, dict) and part.get("type") in _SOURCE_BLOCKS:
                        _check_source(part, f"{p}.content.{j}")


@dataclass(slots=True)
class AnthropicRequest:
    """A validated `/v1/messages` (or `/v1/messages/count_tokens`) request."""

    model: str
    body: dict[str, Any]
    stream: bool = False
    size: int = 0
    """What bounds the prompt's tokens (`core.admission.ParsedBody.size`)."""

    @classmethod
    def parse(cls, raw: bytes, *, count_tokens: bool = False) -> AnthropicRequest:
        parsed = json_body(raw, "model: Field required")
        body, model = parsed.body, parsed.model
        if not count_tokens:
            max_tokens = body.get("max_tokens")
            require(
                isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0,
                "max_tokens: Field required (a positive integer)",
                "max_tokens",
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("messages: Field required", "messages")
        for index, message in enumerate(messages):
            p = f"messages.{index}"
            require(isinstance(message, dict), "each message must be an object", p)
            role = message.get("role")
            require(role in _ROLES, "role: Input should be 'user' or 'assistant'", f"{p}.role")
            _check_content(message.get("content"), f"{p}.content", role, index == len(messages) - 1)
        system = body.get("system")
        if system is not None and not isinstance(system, str):
            require(isinstance(system, list), "system must be a string or a list of text blocks", "system")
            for index, block in enumerate(system):
                require(
                    isinstance(block, dict)
                    and block.get("type") == "text"
                    and isinstance(block.get("text"), str),
                    "system blocks must be text blocks",
                    f"system.{index}",
                )
        for name in ("temperature", "top_p"):
            value = body.get(name)
            require(
                value is None or (isinstance(value, int | float) and not isinstance(value, bool)),
                f"{name}: Input should be a valid number",
                name,
            )
        tools = body.get("tools")
        require(tools is None or isinstance(tools, list), "tools: Input should be a valid list", "tools")
        for index, tool in enumerate(tools or []):
            require(
                isinstance(tool, dict) and isinstance(tool.get("name"), str),
                "each tool needs a name",
                f"tools.{index}",
            )
        stream = body.get("stream", False)
        require(
            stream is None or isinstance(stream, bool), "stream: Input should be a valid boolean", "stream"
        )
        return cls(model=model, body=body, stream=bool(stream), size=parsed.size)

    def to_bedrock(self, entry: ModelEntry, client_betas: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
        """The InvokeModel body for `entry`, and the betas dropped (for the log)."""
        betas = list(client_betas) + [b for b in self.body.get("anthropic_beta") or [] if isinstance(b, str)]
        kept = [b for b in dict.fromkeys(betas) if b in entry.betas]
        dropped = [b for b in dict.fromkeys(betas) if b not in entry.betas]
        body: dict[str, Any] = {"anthropic_version": BEDROCK_ANTHROPIC_VERSION}
        body.update({k: v for k, v in self.body.items() if k in _BEDROCK_FIELDS})
        if kept:
            body["anthropic_beta"] = kept
        keep_ttl = "cache_ttl" in entry.capabilities
        _gate_fields(body, kept, keep_ttl)
        return body, dropped

    def whole_prompt(self) -> dict[str, Any]:
        """System and messages, as the meter keeps them on the thread."""
        prompt: dict[str, Any] = {"messages": self.body.get("messages")}
        if self.body.get("system") is not None:
            prompt["system"] = self.body["system"]
        return prompt

    def last_user_text(self) -> str:
        for message in reversed(self.body.get("messages") or []):
            if isinstance(message, dict) and message.get("role") == "user":
                return _text_of(message.get("content"))
        return ""


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _clean_cache_control(block: Any, keep_ttl: bool) -> None:
    if not isinstance(block, dict) or not isinstance(block.get("cache_control"), dict):
        return
    # Bedrock takes `type` (and `ttl` on Claude 4.5 onward), never `scope`.
    control = {"type": block["cache_control"].get("type", "ephemeral")}
    if keep_ttl and block["cache_control"].get("ttl") is not None:
        control["ttl"] = block["cache_control"]["ttl"]
    block["cache_control"] = control


def _gate_fields(body: dict[str, Any], kept: list[str], keep_ttl: bool) -> None:
    """Drop the body fields whose beta is not sent, and tidy what Bedrock is strict about."""
    if _CONTEXT_MANAGEMENT_BETA not in kept:
        body.pop("context_management", None)
    config = body.get("output_config")
    if isinstance(config, dict):
        config = {k: v for k, v in config.items() if k == "effort" and _EFFORT_BETA in kept}
        if config:
            body["output_config"] = config
        else:
            body.pop("output_config")
    tools = body.get("tools")
    if isinstance(tools, list):
        kept_tools = []
        for tool in tools:
            if not isinstance(tool, dict):
                continue
            kind = str(tool.get("type") or "")
            if kind.startswith("tool_search_tool") and _TOOL_SEARCH_BETA not in kept:
                continue
            if not kind or kind == "custom":
                tool = {k: v for k, v in tool.items() if k in _TOOL_KEYS}
            else:
                tool = {k: v for k, v in tool.items() if k not in ("strict", "defer_loading")}
            _clean_cache_control(tool, keep_ttl)
            kept_tools.append(tool)
        body["tools"] = kept_tools
    system = body.get("system")
    if isinstance(system, list):
        body["system"] = [dict(b) for b in system]
        for block in body["system"]:
            _clean_cache_control(block, keep_ttl)
    messages = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list):
            content = [dict(b) if isinstance(b, dict) else b for b in content]
            for block in content:
                _clean_cache_control(block, keep_ttl)
            message = {**message, "content": content}
        messages.append(message)
    body["messages"] = messages


def count_tokens_body(invoke_body: dict[str, Any]) -> bytes:
    """Bedrock CountTokens' request for an InvokeModel body."""
    counted = {**invoke_body}
    counted.setdefault("max_tokens", COUNT_TOKENS_MAX_TOKENS)
    encoded = base64.b64encode(orjson.dumps(counted)).decode()
    return orjson.dumps({"input": {"invokeModel": {"body": encoded}}})


_ANTHROPIC_USAGE_FIELDS = (
    ("input_tokens", "input"),
    ("output_tokens", "output"),
    ("cache_read_input_tokens", "cache_read"),
    ("cache_creation_input_tokens", "cache_write"),
)
_BEDROCK_METRICS_FIELDS = (
    ("inputTokenCount", "input"),
    ("outputTokenCount", "output"),
    ("cacheReadInputTokenCount", "cache_read"),
    ("cacheWriteInputTokenCount", "cache_write"),
)


@dataclass(slots=True)
class AnthropicUsage(TokenUsage):
    """Token counts of one Claude call, read from Anthropic's `usage` and Bedrock's metrics."""

    def update(self, usage: Any) -> None:
        """Take every count present (message_delta's are cumulative and may repeat input)."""
        self._take(usage, _ANTHROPIC_USAGE_FIELDS)

    def take_metrics(self, metrics: Any) -> None:
        """Bedrock's own `amazon-bedrock-invocationMetrics`: the authoritative final counts."""
        if not isinstance(metrics, dict):
            return
        self._take(metrics, _BEDROCK_METRICS_FIELDS)
        self.reported = True

    def _take(self, source: Any, fields: tuple[tuple[str, str], ...]) -> None:
        """Copy the integer counts `source` has, by (its key, our field) pairs."""
        if not isinstance(source, dict):
            return
        for key, name in fields:
            value = source.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, value)


def message_body(response: dict[str, Any], model: str) -> tuple[dict[str, Any], str, AnthropicUsage]:
    """The client's message for an InvokeModel answer; also its text and usage."""
    body = {**response, "model": model}
    body.pop("amazon-bedrock-invocationMetrics", None)
    usage = AnthropicUsage()
    usage.update(response.get("usage"))
    usage.reported = isinstance(response.get("usage"), dict)
    text = "".join(
        b.get("text", "")
        for b in response.get("content") or []
        if isinstance(b, dict) and b.get("type") == "text"
    )
    return body, text, usage


_GENERATED_DELTAS = {"thinking_delta": "thinking", "input_json_delta": "partial_json"}
"""Content deltas beside text that are output tokens: their type → the field with the text."""


@dataclass(slots=True)
class AnthropicStream:
    """Bedrock's streamed Anthropic events → Anthropic SSE frames, for one request."""

    model: str
    usage: AnthropicUsage = field(default_factory=AnthropicUsage)
    stop_reason: str | None = None
    text: list[str] = field(default_factory=list)
    """The answer's text (the chat log's completion)."""
    generated: list[str] = field(default_factory=list)
    """Everything generated that the client was sent: text, thinking and tool-call input
    (what an estimate of output tokens counts when Bedrock's never come)."""
    invocation_latency_ms: int | None = None
    finished: bool = False
    """True once `message_stop` went out: the answer is complete."""

    def on_event(self, event: dict[str, Any]) -> list[bytes]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            if isinstance(message, dict):
                self.usage.update(message.get("usage"))
                event = {**event, "message": {**message, "model": self.model}}
            # Anthropic's API pings right after message_start; clients expect to tolerate it.
            return [sse_frame(event), PING_FRAME]
        if kind == "content_block_delta":
            delta = event.get("delta")
            if isinstance(delta, dict):
                kind = delta.get("type")
                if kind == "text_delta":
                    self.text.append(str(delta.get("text", "")))
                    self.generated.append(self.text[-1])
                elif kind in _GENERATED_DELTAS:
                    self.generated.append(str(delta.get(_GENERATED_DELTAS[kind], "")))
        elif kind == "message_delta":
            self.usage.update(event.get("usage"))
            # Anthropic's own final count: the stream is billable from here even if Bedrock's
            # invocation metrics never come.
            self.usage.reported = self.usage.reported or isinstance(event.get("usage"), dict)
            delta = event.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self.stop_reason = str(delta["stop_reason"])
        elif kind == "message_stop":
            metrics = event.get("amazon-bedrock-invocationMetrics")
            if metrics is not None:
                self.usage.take_metrics(metrics)
                latency = metrics.get("invocationLatency") if isinstance(metrics, dict) else None
                self.invocation_latency_ms = int(latency) if isinstance(latency, int) else None
                event = {k: v for k, v in event.items() if k != "amazon-bedrock-invocationMetrics"}
            self.finished = True
        return [sse_frame(event)]

    @staticmethod
    def error_frame(status: int, message: str) -> bytes:
        """A mid-stream failure as Anthropic sends it: `event: error` (the SDK raises on it)."""
        return sse_frame(anthropic_error(status, message))

    @staticmethod
    def ping_frame() -> bytes:
        return PING_FRAME

    @property
    def completion(self) -> str:
        return "".join(self.text)
