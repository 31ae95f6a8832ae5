"""OpenAI Chat Completions ⇄ Bedrock Converse: pure conversion, one object per request.

`OpenAIChatRequest.parse` validates the client's body and says which field is wrong;
`to_converse` builds the Converse request; `chat_completion` and `ChatCompletionStream` turn
Bedrock's answer (one JSON document, or ConverseStream events) into OpenAI's
`chat.completion` object or `chat.completion.chunk` SSE frames. Nothing here does I/O.

Beyond OpenAI's own fields, the conventions other OpenAI-compatible gateways use:

- Reasoning: `reasoning_effort` (`low` 1024, `medium` 4096, `high` 16384 thinking tokens;
  `minimal` 1024, `none` off) or Anthropic's `thinking: {"type": "enabled", "budget_tokens":
  N}` turn on Claude's extended thinking. The answer carries `reasoning_content` (the text,
  in the message and as stream deltas) and `thinking_blocks` (`{"type": "thinking",
  "thinking", "signature"}` / `{"type": "redacted_thinking", "data"}`). A client that sends
  an assistant turn back with its `thinking_blocks` gets them to Bedrock signed, as tool use
  with thinking requires.
- Prompt caching: `cache_control` on a content part, on a message, or on a tool definition
  puts a Converse `cachePoint` after it.
- `response_format` `json_object` / `json_schema` is a tool the model is made to call (when
  thinking is off: Claude cannot be forced while thinking); its input is the answer's content.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from core.admission import BodyRefused, OutputCeiling, openai_output_ceiling, output_tokens_for
from core.catalogue import ModelEntry
from translator.converse_helpers import (
    CACHE_POINT,
    IMAGE_MEDIA_TYPES,
    MAX_IMAGE_BYTES,
    InvalidRequest,
    TokenUsage,
    check_image_data,
    json_body,
    require,
)

__all__ = [
    "MAX_IMAGE_BYTES",
    "ChatCompletionStream",
    "InvalidRequest",
    "OpenAIChatRequest",
    "TokenUsage",
    "chat_completion",
    "finish_reason",
]

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
    "malformed_model_output": "stop",
    "malformed_tool_use": "stop",
}

_JSON_TOOL_NAME = re.compile(r"[^a-zA-Z0-9_-]")
_DUMMY_TOOL = {
    "toolSpec": {
        "name": "no_tools_offered",
        "description": "Not callable: only declared because earlier turns used tools.",
        "inputSchema": {"json": {"type": "object", "properties": {}}},
    }
}


def finish_reason(stop_reason: str | None) -> str:
    """OpenAI's `finish_reason` for a Bedrock `stopReason`."""
    return _FINISH.get(stop_reason or "end_turn", "stop")


_require = require


def _with_cache_point(blocks: list[dict[str, Any]], part: Any) -> list[dict[str, Any]]:
    """A cache point after the blocks if `part` (a content part or message) asks for one."""
    marked = isinstance(part, dict) and part.get("cache_control")
    if marked and blocks and "cachePoint" not in blocks[-1]:
        blocks.append(dict(CACHE_POINT))
    return blocks


def _text_parts(content: Any, param: str) -> list[tuple[str, bool]]:
    """A `system`/`developer`/`tool`/assistant content as (text, cache point after it) parts."""
    if isinstance(content, str):
        return [(content, False)]
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            _require(
                isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str),
                "only text parts are allowed here",
                f"{param}[{i}]",
            )
            parts.append((part["text"], bool(part.get("cache_control"))))
        return parts
    raise InvalidRequest("content must be a string or a list of content parts", param)


def _text_blocks(content: Any, param: str, cache_after: bool = False) -> list[dict[str, Any]]:
    """Text blocks, joined between cache points (one block unless the client marked parts)."""
    blocks: list[dict[str, Any]] = []
    pending = ""
    for text, cache in _text_parts(content, param):
        pending += text
        if cache and pending.strip():
            blocks.extend(({"text": pending}, dict(CACHE_POINT)))
            pending = ""
    if pending.strip():
        blocks.append({"text": pending})
    if cache_after and blocks and "cachePoint" not in blocks[-1]:
        blocks.append(dict(CACHE_POINT))
    return blocks


def _image_block(url: Any, param: str) -> dict[str, Any]:
    _require(isinstance(url, str), "image_url.url must be a string", param)
    if url.startswith(("http://", "https://")):
        # Fetching URLs server-side would let any key make the gateway request internal hosts.
        raise InvalidRequest(
            "Image URLs are not fetched by this gateway; send the image inline as a data: URI "
            "(data:image/png;base64,…).",
            param,
        )
    _require(url.startswith("data:") and ";base64," in url, "image_url.url must be a base64 data: URI", param)
    header, _, data = url[5:].partition(";base64,")
    image_format = IMAGE_MEDIA_TYPES.get(header.lower())
    _require(image_format is not None, f"unsupported image type {header!r} (png, jpeg, gif, webp)", param)
    check_image_data(data, param)
    # The Converse wire format carries blobs as base64 strings: pass the client's through.
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _user_blocks(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        _require(content.strip() != "", "content must not be empty", param)
        return _with_cache_point([{"text": content}], message)
    _require(
        isinstance(content, list) and len(content) > 0, "content must be a non-empty string or list", param
    )
    assert isinstance(content, list)
    blocks: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        p = f"{param}[{i}]"
        _require(isinstance(part, dict), "each content part must be an object", p)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            _require(isinstance(text, str), "text must be a string", f"{p}.text")
            if text.strip():
                blocks.append({"text": text})
                _with_cache_point(blocks, part)
        elif kind == "image_url":
            image_url = part.get("image_url")
            url = image_url.get("url") if isinstance(image_url, dict) else image_url
            blocks.append(_image_block(url, f"{p}.image_url.url"))
            _with_cache_point(blocks, part)
        else:
            raise InvalidRequest(f"unsupported content part type {kind!r}", f"{p}.type")
    _require(any("cachePoint" not in b for b in blocks), "content must not be empty", param)
    return _with_cache_point(blocks, message)


def _reasoning_blocks(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    """An assistant turn's `thinking_blocks`, signed as Bedrock needs them back."""
    thinking = message.get("thinking_blocks")
    if thinking is None:
        return []
    _require(isinstance(thinking, list), "thinking_blocks must be a list", f"{param}.thinking_blocks")
    blocks = []
    for i, block in enumerate(thinking):
        p = f"{param}.thinking_blocks[{i}]"
        _require(isinstance(block, dict), "each thinking block must be an object", p)
        if block.get("type") == "redacted_thinking":
            _require(isinstance(block.get("data"), str), "redacted_thinking needs data", f"{p}.data")
            blocks.append({"reasoningContent": {"redactedContent": block["data"]}})
        elif block.get("type") == "thinking":
            text, signature = block.get("thinking"), block.get("signature")
            _require(isinstance(text, str), "thinking must be a string", f"{p}.thinking")
            # An unsigned block cannot go back to Bedrock; the model reasons afresh instead.
            if isinstance(signature, str) and signature:
                blocks.append({"reasoningContent": {"reasoningText": {"text": text, "signature": signature}}})
        else:
            raise InvalidRequest("type must be 'thinking' or 'redacted_thinking'", f"{p}.type")
    return blocks


def _assistant_blocks(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    blocks = _reasoning_blocks(message, param)
    content = message.get("content")
    if content is not None:
        blocks.extend(_text_blocks(content, f"{param}.content", bool(message.get("cache_control"))))
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        _require(isinstance(tool_calls, list), "tool_calls must be a list", f"{param}.tool_calls")
        for i, call in enumerate(tool_calls):
            p = f"{param}.tool_calls[{i}]"
            function = call.get("function") if isinstance(call, dict) else None
            _require(isinstance(function, dict), "each tool call needs a function", p)
            assert isinstance(function, dict)
            arguments = function.get("arguments") or "{}"
            try:
                parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
            except orjson.JSONDecodeError:
                raise InvalidRequest(
                    "function.arguments must be a JSON object", f"{p}.function.arguments"
                ) from None
            blocks.append(
                {
                    "toolUse": {
                        "toolUseId": str(call.get("id")),
                        "name": str(function.get("name")),
                        "input": parsed,
                    }
                }
            )
    _require(
        any("cachePoint" not in b and "reasoningContent" not in b for b in blocks),
        "an assistant message needs content or tool_calls",
        f"{param}.content",
    )
    return blocks


def _tool_result_blocks(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    tool_call_id = message.get("tool_call_id")
    _require(isinstance(tool_call_id, str), "tool messages need tool_call_id", f"{param}.tool_call_id")
    parts = _text_parts(message.get("content"), f"{param}.content")
    result = {"toolResult": {"toolUseId": tool_call_id, "content": [{"text": "".join(t for t, _ in parts)}]}}
    cache = any(c for _, c in parts) or bool(message.get("cache_control"))
    return [result, dict(CACHE_POINT)] if cache else [result]


def _tool_specs(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    _require(isinstance(tools, list), "tools must be a list", "tools")
    specs = []
    for i, tool in enumerate(tools):
        p = f"tools[{i}]"
        _require(
            isinstance(tool, dict) and tool.get("type") == "function", "only function tools are supported", p
        )
        function = tool.get("function")
        _require(
            isinstance(function, dict) and isinstance(function.get("name"), str),
            "function.name is required",
            p,
        )
        spec: dict[str, Any] = {
            "name": function["name"],
            "inputSchema": {"json": function.get("parameters") or {"type": "object", "properties": {}}},
        }
        if function.get("description"):
            spec["description"] = function["description"]
        specs.append({"toolSpec": spec})
        if tool.get("cache_control"):
            specs.append(dict(CACHE_POINT))
    return specs


def _tool_choice(tool_choice: Any) -> dict[str, Any] | str | None:
    """Converse's toolChoice; "none" for OpenAI's none (Converse has no such choice)."""
    if tool_choice is None or tool_choice == "auto":
        return None
    if tool_choice == "none":
        return "none"
    if tool_choice == "required":
        return {"any": {}}
    if isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
        return {"tool": {"name": tool_choice["function"].get("name")}}
    raise InvalidRequest("tool_choice must be 'auto', 'none', 'required' or a named function", "tool_choice")


def _json_tool(response_format: Any) -> dict[str, Any] | None:
    """The tool that carries a JSON answer for `response_format`, or None for plain text."""
    if response_format is None:
        return None
    _require(isinstance(response_format, dict), "response_format must be an object", "response_format")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        schema: Any = {"type": "object", "additionalProperties": True, "properties": {}}
        return {
            "name": "json_object",
            "description": "Answer with a JSON object.",
            "inputSchema": {"json": schema},
        }
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        _require(
            isinstance(spec, dict) and isinstance(spec.get("name"), str),
            "json_schema.name is required",
            "response_format.json_schema",
        )
        assert isinstance(spec, dict)
        schema = spec.get("schema")
        _require(
            isinstance(schema, dict),
            "json_schema.schema must be an object",
            "response_format.json_schema.schema",
        )
        name = _JSON_TOOL_NAME.sub("_", spec["name"])[:64] or "json_schema"
        description = spec.get("description") or "Answer with JSON that matches this schema."
        return {"name": name, "description": description, "inputSchema": {"json": schema}}
    raise InvalidRequest(
        "response_format.type must be 'text', 'json_object' or 'json_schema'", "response_format.type"
    )


@dataclass(slots=True)
class OpenAIChatRequest:
    """A validated `/v1/chat/completions` request."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    body: dict[str, Any]
    output: OutputCeiling
    """The output ceiling (`core.admission`): what authz reserved for, what Bedrock is sent."""
    size: int
    """What bounds the prompt's tokens (`core.admission.ParsedBody.size`)."""
    user: str | None = None
    json_tool: str | None = None
    """Set by `to_converse` when `response_format` asks for JSON: the tool carrying the answer."""

    @classmethod
    def parse(cls, raw: bytes) -> OpenAIChatRequest:
        parsed = json_body(raw)
        body, model = parsed.body, parsed.model
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("messages must be a non-empty list", "messages")
        stream = body.get("stream", False)
        _require(isinstance(stream, bool) or stream is None, "stream must be a boolean", "stream")
        options = body.get("stream_options") or {}
        _require(isinstance(options, dict), "stream_options must be an object", "stream_options")
        n = body.get("n")
        _require(n is None or n == 1, "n > 1 is not supported by Bedrock", "n")
        _require(not body.get("logprobs"), "logprobs are not supported by Bedrock", "logprobs")
        _require(not body.get("top_logprobs"), "top_logprobs are not supported by Bedrock", "top_logprobs")
        user = body.get("user")
        try:
            output = openai_output_ceiling(body)
        except BodyRefused as refusal:
            raise InvalidRequest(refusal.message, refusal.param) from None
        return cls(
            model=model,
            messages=messages,
            stream=bool(stream),
            include_usage=bool(options.get("include_usage")),
            body=body,
            output=output,
            size=parsed.size,
            user=user if isinstance(user, str) else None,
        )

    def to_converse(self, entry: ModelEntry | None = None) -> dict[str, Any]:
        """The Converse request body (without the model id, which goes in the URL).

        Validates the whole request; with the model's catalogue `entry` it is also fitted to
        that model (`fit_to_model`).
        """
        system: list[dict[str, Any]] = []
        turns: list[dict[str, Any]] = []
        for i, message in enumerate(self.messages):
            param = f"messages[{i}]"
            _require(isinstance(message, dict), "each message must be an object", param)
            role = message.get("role")
            if role in ("system", "developer"):
                system.extend(
                    _text_blocks(
                        message.get("content"), f"{param}.content", bool(message.get("cache_control"))
                    )
                )
                continue
            if role == "user":
                bedrock_role, blocks = "user", _user_blocks(message, f"{param}.content")
            elif role == "assistant":
                bedrock_role, blocks = "assistant", _assistant_blocks(message, param)
            elif role == "tool":
                bedrock_role, blocks = "user", _tool_result_blocks(message, param)
            else:
                raise InvalidRequest(f"unsupported role {role!r}", f"{param}.role")
            if turns and turns[-1]["role"] == bedrock_role:
                # Bedrock requires alternating turns; consecutive same-role turns (e.g. several
                # tool results) become one turn with their blocks in order.
                turns[-1]["content"].extend(blocks)
            else:
                turns.append({"role": bedrock_role, "content": blocks})
        _require(len(turns) > 0, "messages must contain at least one user message", "messages")

        request: dict[str, Any] = {"messages": turns}
        if system:
            request["system"] = system
        budget = self.output.thinking_budget
        # The output ceiling is always explicit, never the model's own default: it is what
        # authz reserved the call's cost for (`fit_to_model` may lower a default one).
        inference = {"maxTokens": self.output.max_tokens, **self._inference_config()}
        if budget is not None:
            request["additionalModelRequestFields"] = {
                "thinking": {"type": "enabled", "budget_tokens": budget}
            }
        request["inferenceConfig"] = inference
        tool_config = self._tool_config(turns, thinking=budget is not None)
        if tool_config:
            request["toolConfig"] = tool_config
        if entry is not None:
            self.fit_to_model(request, entry)
        return request

    def fit_to_model(self, request: dict[str, Any], entry: ModelEntry) -> None:
        """Fit a Converse request to what the model can do, in place.

        Features it lacks are a clear 400 (images, tools, reasoning) or quietly left out where
        they are only an optimisation (cache points).
        """
        capabilities = entry.capabilities
        model = self.model
        turns = request["messages"]
        if "vision" not in capabilities and any("image" in b for t in turns for b in t["content"]):
            raise InvalidRequest(f"the model '{model}' does not accept images", "messages")
        tool_config = request.get("toolConfig")
        if tool_config and "tools" not in capabilities:
            param = "response_format" if self.json_tool else "tools"
            raise InvalidRequest(f"the model '{model}' does not support tools (needed for {param})", param)
        if "additionalModelRequestFields" in request:
            param = "thinking" if "thinking" in self.body else "reasoning_effort"
            if "reasoning" not in capabilities:
                raise InvalidRequest(f"the model '{model}' does not support reasoning", param)
            if entry.provider != "anthropic":
                # DeepSeek R1 always reasons: there is nothing to switch on.
                del request["additionalModelRequestFields"]
        request["inferenceConfig"]["maxTokens"] = output_tokens_for(self.output, entry)
        if "caching" not in capabilities:
            for blocks in (
                request.get("system"),
                *(t["content"] for t in turns),
                (tool_config or {}).get("tools"),
            ):
                if blocks:
                    blocks[:] = [b for b in blocks if "cachePoint" not in b]

    def _tool_config(self, turns: list[dict[str, Any]], *, thinking: bool) -> dict[str, Any] | None:
        specs = _tool_specs(self.body.get("tools"))
        choice = _tool_choice(self.body.get("tool_choice")) if specs else None
        json_tool = _json_tool(self.body.get("response_format"))
        if json_tool is not None:
            _require(
                not any("toolSpec" in s for s in specs),
                "response_format json_object/json_schema cannot be combined with tools on this gateway",
                "response_format",
            )
            self.json_tool = json_tool["name"]
            specs = [{"toolSpec": json_tool}]
            # Claude refuses a forced tool while thinking; then the model is only offered it.
            choice = None if thinking else {"tool": {"name": json_tool["name"]}}
        history_has_tools = any(
            "toolUse" in block or "toolResult" in block for turn in turns for block in turn["content"]
        )
        if choice == "none" or not any("toolSpec" in s for s in specs):
            if not history_has_tools:
                return None
            # Converse has no "none", and offering no tools has the same effect; but Bedrock
            # refuses toolUse/toolResult blocks in the history without a toolConfig.
            return {"tools": specs if any("toolSpec" in s for s in specs) else [_DUMMY_TOOL]}
        config: dict[str, Any] = {"tools": specs}
        if isinstance(choice, dict):
            config["toolChoice"] = choice
        return config

    def _inference_config(self) -> dict[str, Any]:
        """Sampling settings (the output ceiling is `self.output`)."""
        body = self.body
        config: dict[str, Any] = {}
        for name, target in (("temperature", "temperature"), ("top_p", "topP")):
            value = body.get(name)
            if value is not None:  # 0 is a value, not "unset"
                _require(
                    isinstance(value, int | float) and not isinstance(value, bool), "must be a number", name
                )
                config[target] = value
        stop = body.get("stop")
        if stop is not None:
            stops = [stop] if isinstance(stop, str) else stop
            _require(
                isinstance(stops, list) and all(isinstance(s, str) for s in stops),
                "stop must be a string or a list of strings",
                "stop",
            )
            stops = [s for s in stops if s]  # Converse refuses empty stop sequences
            if stops:
                config["stopSequences"] = stops
        return config

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return content
                if isinstance(content, list):
                    return "".join(
                        p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
                    )
        return ""


def _thinking_block(reasoning: dict[str, Any]) -> dict[str, Any] | None:
    if "redactedContent" in reasoning:
        return {"type": "redacted_thinking", "data": reasoning["redactedContent"]}
    text = reasoning.get("reasoningText") or {}
    if not text.get("signature"):
        return None
    return {"type": "thinking", "thinking": text.get("text", ""), "signature": text["signature"]}


def chat_completion(
    completion_id: str,
    model: str,
    response: dict[str, Any],
    created: int | None = None,
    json_tool: str | None = None,
) -> tuple[dict[str, Any], str, TokenUsage]:
    """OpenAI's `chat.completion` for a Converse response; also returns the text and usage.

    `json_tool` names the tool that carries a `response_format` answer: its input becomes
    the message content.
    """
    content = ((response.get("output") or {}).get("message") or {}).get("content") or []
    texts: list[str] = []
    reasoning: list[str] = []
    thinking_blocks: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    for block in content:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            arguments = orjson.dumps(use.get("input", {})).decode()
            if json_tool is not None and use.get("name") == json_tool:
                texts.append(arguments)
                continue
            tool_calls.append(
                {
                    "id": use.get("toolUseId"),
                    "type": "function",
                    "function": {"name": use.get("name"), "arguments": arguments},
                }
            )
        elif "reasoningContent" in block:
            reasoning_text = (block["reasoningContent"].get("reasoningText") or {}).get("text")
            if reasoning_text:
                reasoning.append(reasoning_text)
            thinking = _thinking_block(block["reasoningContent"])
            if thinking is not None:
                thinking_blocks.append(thinking)
    text = "".join(texts)
    usage = TokenUsage.from_bedrock(response.get("usage") or {})
    message: dict[str, Any] = {"role": "assistant", "content": text if texts or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if thinking_blocks:
        message["thinking_blocks"] = thinking_blocks
    stop_reason = response.get("stopReason")
    if json_tool is not None and stop_reason == "tool_use" and not tool_calls:
        stop_reason = "end_turn"
    body = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason(stop_reason),
                "logprobs": None,
            }
        ],
        "usage": usage.openai(),
    }
    return body, text, usage


@dataclass(slots=True)
class ChatCompletionStream:
    """ConverseStream events → `chat.completion.chunk` SSE frames, for one request."""

    completion_id: str
    model: str
    include_usage: bool
    created: int = field(default_factory=lambda: int(time.time()))
    json_tool: str | None = None
    """The tool carrying a `response_format` answer: its input is streamed as content."""
    usage: TokenUsage = field(default_factory=TokenUsage)
    stop_reason: str | None = None
    latency_ms: int | None = None
    text: list[str] = field(default_factory=list)
    """The answer's content (the chat log's completion)."""
    generated: list[str] = field(default_factory=list)
    """Everything generated that the client was sent: content, tool-call arguments and
    reasoning (what an estimate of output tokens counts when Bedrock's never come)."""
    _tool_index: dict[int, int] = field(default_factory=dict)
    _json_blocks: set[int] = field(default_factory=set)
    _reasoning: dict[int, list[str]] = field(default_factory=dict)
    _prefix: bytes = b""

    def __post_init__(self) -> None:
        # Every chunk shares these fields; serialise them once.
        head = orjson.dumps(
            {
                "id": self.completion_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
            }
        )
        self._prefix = b"data: " + head[:-1] + b","

    def _frame(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        return self._prefix + orjson.dumps({"choices": choices, "usage": usage})[1:] + b"\n\n"

    def _delta(self, delta: dict[str, Any], reason: str | None = None) -> bytes:
        return self._frame([{"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}])

    def first_frame(self) -> bytes:
        return self._delta({"role": "assistant", "content": ""})

    def on_event(self, event_type: str, payload: dict[str, Any]) -> list[bytes]:
        """Frames for one ConverseStream event (often one, sometimes none)."""
        if event_type == "contentBlockDelta":
            delta = payload.get("delta") or {}
            block = int(payload.get("contentBlockIndex", 0))
            if "text" in delta:
                self.text.append(delta["text"])
                self.generated.append(delta["text"])
                return [self._delta({"content": delta["text"]})]
            if "toolUse" in delta:
                args = delta["toolUse"].get("input", "")
                self.generated.append(args)
                if block in self._json_blocks:
                    self.text.append(args)
                    return [self._delta({"content": args})] if args else []
                index = self._tool_index.get(block, 0)
                return [self._delta({"tool_calls": [{"index": index, "function": {"arguments": args}}]})]
            if "reasoningContent" in delta:
                return self._reasoning_delta(block, delta["reasoningContent"])
            return []
        if event_type == "contentBlockStart":
            start = (payload.get("start") or {}).get("toolUse")
            if start:
                block = int(payload.get("contentBlockIndex", 0))
                if self.json_tool is not None and start.get("name") == self.json_tool:
                    self._json_blocks.add(block)
                    return []
                # OpenAI numbers tool calls 0, 1, …; Bedrock numbers all content blocks.
                index = len(self._tool_index)
                self._tool_index[block] = index
                call = {
                    "index": index,
                    "id": start.get("toolUseId"),
                    "type": "function",
                    "function": {"name": start.get("name"), "arguments": ""},
                }
                return [self._delta({"tool_calls": [call]})]
            return []
        if event_type == "messageStop":
            self.stop_reason = payload.get("stopReason")
            reason = self.stop_reason
            if self._json_blocks and not self._tool_index and reason == "tool_use":
                reason = "end_turn"
            return [self._delta({}, finish_reason(reason))]
        if event_type == "metadata":
            self.usage = TokenUsage.from_bedrock(payload.get("usage") or {})
            latency = (payload.get("metrics") or {}).get("latencyMs")
            self.latency_ms = int(latency) if latency is not None else None
            if self.include_usage:
                return [self._frame([], self.usage.openai())]
            return []
        return []

    def _reasoning_delta(self, block: int, reasoning: dict[str, Any]) -> list[bytes]:
        text = reasoning.get("text")
        if text:
            self.generated.append(text)
            self._reasoning.setdefault(block, []).append(text)
            return [self._delta({"reasoning_content": text})]
        if reasoning.get("signature"):
            # The whole signed block, once complete, so the client can send it back as it is.
            thinking = "".join(self._reasoning.get(block, []))
            signed = {"type": "thinking", "thinking": thinking, "signature": reasoning["signature"]}
            return [self._delta({"thinking_blocks": [signed]})]
        if reasoning.get("redactedContent"):
            redacted = {"type": "redacted_thinking", "data": reasoning["redactedContent"]}
            return [self._delta({"thinking_blocks": [redacted]})]
        return []

    def done_frame(self) -> bytes:
        return b"data: [DONE]\n\n"

    @staticmethod
    def error_frame(message: str, type_: str = "server_error", code: str | None = None) -> bytes:
        """A mid-stream failure as the OpenAI SDK reads it (it raises APIError on this)."""
        body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
        return b"data: " + orjson.dumps(body) + b"\n\n"

    @property
    def completion(self) -> str:
        return "".join(self.text)
