"""OpenAI Chat Completions ⇄ Bedrock Converse: pure conversion, one object per request.

`OpenAIChatRequest.parse` validates the client's body and says which field is wrong;
`to_converse` builds the Converse request; `ChatCompletion` and `ChatCompletionStream` turn
Bedrock's answer (one JSON document, or ConverseStream events) into OpenAI's
`chat.completion` object or `chat.completion.chunk` SSE frames. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "ChatCompletionStream",
    "InvalidRequest",
    "OpenAIChatRequest",
    "TokenUsage",
    "chat_completion",
    "finish_reason",
]

MAX_IMAGE_BYTES = 3_750_000
"""Bedrock's limit for one image (3.75 MB)."""

_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
}


def finish_reason(stop_reason: str | None) -> str:
    """OpenAI's `finish_reason` for a Bedrock `stopReason`."""
    return _FINISH.get(stop_reason or "end_turn", "stop")


class InvalidRequest(Exception):
    """The client's request is malformed; `param` names the offending field."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


@dataclass(slots=True)
class TokenUsage:
    """Token counts as Bedrock reports them (`input` excludes cached tokens)."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reported: bool = False
    """True once Bedrock's own usage report arrived (else the counts are ours or zero)."""

    @classmethod
    def from_bedrock(cls, usage: dict[str, Any]) -> TokenUsage:
        return cls(
            input=int(usage.get("inputTokens", 0)),
            output=int(usage.get("outputTokens", 0)),
            cache_read=int(usage.get("cacheReadInputTokens", 0)),
            cache_write=int(usage.get("cacheWriteInputTokens", 0)),
            reported=True,
        )

    def openai(self) -> dict[str, Any]:
        # OpenAI's prompt_tokens includes cached tokens; cached_tokens is the cache-read part.
        prompt = self.input + self.cache_read + self.cache_write
        return {
            "prompt_tokens": prompt,
            "completion_tokens": self.output,
            "total_tokens": prompt + self.output,
            "prompt_tokens_details": {"cached_tokens": self.cache_read},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }


def _require(condition: bool, message: str, param: str) -> None:
    if not condition:
        raise InvalidRequest(message, param)


def _text_of(content: Any, param: str) -> str:
    """The text of a `system`/`developer`/`tool` content: a string or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            _require(
                isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str),
                "only text parts are allowed here",
                f"{param}[{i}]",
            )
            parts.append(part["text"])
        return "".join(parts)
    raise InvalidRequest("content must be a string or a list of content parts", param)


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
    image_format = _IMAGE_FORMATS.get(header.lower())
    _require(image_format is not None, f"unsupported image type {header!r} (png, jpeg, gif, webp)", param)
    try:
        raw_size = len(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        raise InvalidRequest("image data is not valid base64", param) from None
    if raw_size > MAX_IMAGE_BYTES:
        raise InvalidRequest(f"image is {raw_size} bytes; the limit is {MAX_IMAGE_BYTES} bytes", param)
    # The Converse wire format carries blobs as base64 strings: pass the client's through.
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _user_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        _require(content.strip() != "", "content must not be empty", param)
        return [{"text": content}]
    _require(
        isinstance(content, list) and len(content) > 0, "content must be a non-empty string or list", param
    )
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
        elif kind == "image_url":
            image_url = part.get("image_url")
            url = image_url.get("url") if isinstance(image_url, dict) else image_url
            blocks.append(_image_block(url, f"{p}.image_url.url"))
        else:
            raise InvalidRequest(f"unsupported content part type {kind!r}", f"{p}.type")
    _require(len(blocks) > 0, "content must not be empty", param)
    return blocks


def _assistant_blocks(message: dict[str, Any], param: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    content = message.get("content")
    if content is not None:
        text = _text_of(content, f"{param}.content")
        if text.strip():
            blocks.append({"text": text})
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
    _require(len(blocks) > 0, "an assistant message needs content or tool_calls", f"{param}.content")
    return blocks


def _tool_config(tools: Any, tool_choice: Any, history_has_tools: bool = False) -> dict[str, Any] | None:
    if tools is None:
        return None
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
    if not specs:
        return None
    config: dict[str, Any] = {"tools": specs}
    if tool_choice is None or tool_choice == "auto":
        pass
    elif tool_choice == "none":
        # Converse has no "none". Offering no tools has the same effect, but Bedrock refuses
        # toolUse/toolResult blocks in the history without a toolConfig: keep the tools then.
        return config if history_has_tools else None
    elif tool_choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
        config["toolChoice"] = {"tool": {"name": tool_choice["function"].get("name")}}
    else:
        raise InvalidRequest(
            "tool_choice must be 'auto', 'none', 'required' or a named function", "tool_choice"
        )
    return config


@dataclass(slots=True)
class OpenAIChatRequest:
    """A validated `/v1/chat/completions` request."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    body: dict[str, Any]
    user: str | None = None

    @classmethod
    def parse(cls, raw: bytes) -> OpenAIChatRequest:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequest("The request body is not valid JSON.") from None
        _require(isinstance(body, dict), "The request body must be a JSON object.", "body")
        model = body.get("model")
        _require(isinstance(model, str) and model != "", "model is required", "model")
        messages = body.get("messages")
        _require(
            isinstance(messages, list) and len(messages) > 0, "messages must be a non-empty list", "messages"
        )
        stream = body.get("stream", False)
        _require(isinstance(stream, bool) or stream is None, "stream must be a boolean", "stream")
        options = body.get("stream_options") or {}
        _require(isinstance(options, dict), "stream_options must be an object", "stream_options")
        n = body.get("n")
        _require(n is None or n == 1, "n > 1 is not supported by Bedrock", "n")
        _require(not body.get("logprobs"), "logprobs are not supported by Bedrock", "logprobs")
        _require(not body.get("top_logprobs"), "top_logprobs are not supported by Bedrock", "top_logprobs")
        user = body.get("user")
        return cls(
            model=model,
            messages=messages,
            stream=bool(stream),
            include_usage=bool(options.get("include_usage")),
            body=body,
            user=user if isinstance(user, str) else None,
        )

    def to_converse(self) -> dict[str, Any]:
        """The Converse request body (without the model id, which goes in the URL)."""
        system: list[dict[str, Any]] = []
        turns: list[dict[str, Any]] = []
        for i, message in enumerate(self.messages):
            param = f"messages[{i}]"
            _require(isinstance(message, dict), "each message must be an object", param)
            role = message.get("role")
            if role in ("system", "developer"):
                text = _text_of(message.get("content"), f"{param}.content")
                if text.strip():
                    system.append({"text": text})
                continue
            if role == "user":
                bedrock_role, blocks = "user", _user_blocks(message.get("content"), f"{param}.content")
            elif role == "assistant":
                bedrock_role, blocks = "assistant", _assistant_blocks(message, param)
            elif role == "tool":
                tool_call_id = message.get("tool_call_id")
                _require(
                    isinstance(tool_call_id, str), "tool messages need tool_call_id", f"{param}.tool_call_id"
                )
                text = _text_of(message.get("content"), f"{param}.content")
                bedrock_role = "user"
                blocks = [{"toolResult": {"toolUseId": tool_call_id, "content": [{"text": text}]}}]
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
        inference = self._inference_config()
        if inference:
            request["inferenceConfig"] = inference
        history_has_tools = any(
            "toolUse" in block or "toolResult" in block for turn in turns for block in turn["content"]
        )
        tool_config = _tool_config(self.body.get("tools"), self.body.get("tool_choice"), history_has_tools)
        if tool_config:
            request["toolConfig"] = tool_config
        return request

    def _inference_config(self) -> dict[str, Any]:
        body = self.body
        config: dict[str, Any] = {}
        max_tokens = body.get("max_completion_tokens")
        if max_tokens is None:  # absent or null: the older name may carry it
            max_tokens = body.get("max_tokens")
        if max_tokens is not None:
            _require(
                isinstance(max_tokens, int) and max_tokens > 0, "must be a positive integer", "max_tokens"
            )
            config["maxTokens"] = max_tokens
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


def chat_completion(
    completion_id: str, model: str, response: dict[str, Any], created: int | None = None
) -> tuple[dict[str, Any], str, TokenUsage]:
    """OpenAI's `chat.completion` for a Converse response; also returns the text and usage."""
    content = ((response.get("output") or {}).get("message") or {}).get("content") or []
    texts: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in content:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            tool_calls.append(
                {
                    "id": use.get("toolUseId"),
                    "type": "function",
                    "function": {
                        "name": use.get("name"),
                        "arguments": orjson.dumps(use.get("input", {})).decode(),
                    },
                }
            )
        elif "reasoningContent" in block:
            reasoning_text = (block["reasoningContent"].get("reasoningText") or {}).get("text")
            if reasoning_text:
                reasoning.append(reasoning_text)
    text = "".join(texts)
    usage = TokenUsage.from_bedrock(response.get("usage") or {})
    message: dict[str, Any] = {"role": "assistant", "content": text if texts or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    body = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason(response.get("stopReason")),
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
    usage: TokenUsage = field(default_factory=TokenUsage)
    stop_reason: str | None = None
    latency_ms: int | None = None
    text: list[str] = field(default_factory=list)
    _tool_index: dict[int, int] = field(default_factory=dict)
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
            if "text" in delta:
                self.text.append(delta["text"])
                return [self._delta({"content": delta["text"]})]
            if "toolUse" in delta:
                index = self._tool_index.get(int(payload.get("contentBlockIndex", 0)), 0)
                args = delta["toolUse"].get("input", "")
                return [self._delta({"tool_calls": [{"index": index, "function": {"arguments": args}}]})]
            if "reasoningContent" in delta:
                reasoning_text = delta["reasoningContent"].get("text")
                if reasoning_text:
                    return [self._delta({"reasoning_content": reasoning_text})]
            return []
        if event_type == "contentBlockStart":
            start = (payload.get("start") or {}).get("toolUse")
            if start:
                # OpenAI numbers tool calls 0, 1, …; Bedrock numbers all content blocks.
                index = len(self._tool_index)
                self._tool_index[int(payload.get("contentBlockIndex", 0))] = index
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
            return [self._delta({}, finish_reason(self.stop_reason))]
        if event_type == "metadata":
            self.usage = TokenUsage.from_bedrock(payload.get("usage") or {})
            latency = (payload.get("metrics") or {}).get("latencyMs")
            self.latency_ms = int(latency) if latency is not None else None
            if self.include_usage:
                return [self._frame([], self.usage.openai())]
            return []
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
