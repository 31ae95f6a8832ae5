"""InvokeModel / InvokeModelWithResponseStream for Claude: Anthropic's Messages body on Bedrock.

Pure functions. ``to_converse`` checks an Anthropic body the way Bedrock does (the
``anthropic_version``, the top-level keys it permits, known ``anthropic_beta`` flags) and
rewrites it as a Converse request, so ``responses.converse`` plans the answer for both APIs;
``message`` and ``events`` render that plan as Anthropic's message object or its stream
events (what Bedrock wraps, base64-encoded, in ``chunk`` frames).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .errors import SimulatedError
from .responses import ConverseAnswer, Usage

__all__ = ["KNOWN_BETAS", "anthropic_model_name", "events", "message", "to_converse"]

BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"

_ALLOWED_KEYS = frozenset(
    {
        "anthropic_version",
        "anthropic_beta",
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
        "metadata",
        "output_config",
        "context_management",
    }
)

KNOWN_BETAS = frozenset(
    {
        "computer-use-2024-10-22",
        "computer-use-2025-01-24",
        "computer-use-2025-11-24",
        "context-1m-2025-08-07",
        "context-management-2025-06-27",
        "effort-2025-11-24",
        "fine-grained-tool-streaming-2025-05-14",
        "interleaved-thinking-2025-05-14",
        "output-128k-2025-02-19",
        "token-efficient-tools-2025-02-19",
        "tool-search-tool-2025-10-19",
    }
)
"""Betas Bedrock knows; any other is refused with "invalid beta flag", as Bedrock does."""

_IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}


def _invalid(message: str) -> SimulatedError:
    return SimulatedError("ValidationException", message)


def anthropic_model_name(model_id: str) -> str:
    """Bedrock's `model` field: `us.anthropic.claude-3-haiku-20240307-v1:0` → `claude-3-haiku-20240307`."""
    name = model_id.rsplit(".", 1)[-1] if "anthropic." in model_id else model_id
    head, _, version = name.rpartition("-v")
    return head if head and version[:1].isdigit() else name


def _cache_point(block: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"cachePoint": {"type": "default"}}] if block.get("cache_control") else []


def _tool_result_content(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    if isinstance(content, list):
        return [_block(block, "tool_result.content") for block in content if isinstance(block, dict)]
    return [{"text": ""}]


def _block(block: Any, where: str) -> dict[str, Any]:
    if not isinstance(block, dict):
        raise _invalid(f"{where}: each content block must be an object")
    kind = block.get("type")
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise _invalid(f"{where}.text: Input should be a valid string")
        return {"text": block["text"]}
    if kind == "image":
        source = block.get("source") or {}
        if source.get("type") != "base64":
            raise _invalid(f"{where}.source: only base64 image sources are supported on Bedrock")
        return {
            "image": {
                "format": _IMAGE_TYPES.get(str(source.get("media_type")), "unknown"),
                "source": {"bytes": source.get("data")},
            }
        }
    if kind == "document":
        return {"document": {"format": "pdf", "name": "document", "source": {"bytes": ""}}}
    if kind == "tool_use":
        return {
            "toolUse": {"toolUseId": block.get("id"), "name": block.get("name"), "input": block.get("input")}
        }
    if kind == "tool_result":
        return {
            "toolResult": {
                "toolUseId": block.get("tool_use_id"),
                "content": _tool_result_content(block.get("content")),
            }
        }
    if kind == "thinking":
        reasoning = {"text": block.get("thinking"), "signature": block.get("signature")}
        return {"reasoningContent": {"reasoningText": reasoning}}
    if kind == "redacted_thinking":
        return {"reasoningContent": {"redactedContent": block.get("data")}}
    raise _invalid(f"{where}.type: unsupported content block type {kind!r}")


def _content(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise _invalid(f"{where}: Input should be a valid list or string")
    blocks: list[dict[str, Any]] = []
    for index, block in enumerate(content):
        blocks.append(_block(block, f"{where}.{index}"))
        blocks.extend(_cache_point(block))
    return blocks


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"text": system}] if system else []
    if not isinstance(system, list):
        raise _invalid("system: Input should be a valid list or string")
    blocks: list[dict[str, Any]] = []
    for index, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise _invalid(f"system.{index}: only text blocks are allowed")
        blocks.append({"text": block.get("text")})
        blocks.extend(_cache_point(block))
    return blocks


def _tools(tools: Any, tool_choice: Any) -> dict[str, Any] | None:
    if not tools:
        return None
    if not isinstance(tools, list):
        raise _invalid("tools: Input should be a valid list")
    specs: list[dict[str, Any]] = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise _invalid(f"tools.{index}.name: Field required")
        spec: dict[str, Any] = {"name": tool["name"], "inputSchema": {"json": tool.get("input_schema") or {}}}
        specs.append({"toolSpec": spec})
        specs.extend(_cache_point(tool))
    config: dict[str, Any] = {"tools": specs}
    kind = tool_choice.get("type") if isinstance(tool_choice, dict) else None
    if kind == "any":
        config["toolChoice"] = {"any": {}}
    elif kind == "tool":
        config["toolChoice"] = {"tool": {"name": tool_choice.get("name")}}
    return config


def to_converse(body: Any) -> dict[str, Any]:
    """An Anthropic-on-Bedrock body as the equivalent Converse request; raises as Bedrock would."""
    if not isinstance(body, dict):
        raise _invalid("Malformed input request, please reformat your input and try again.")
    extra = sorted(set(body) - _ALLOWED_KEYS)
    if extra:
        raise _invalid(f"extraneous key [{extra[0]}] is not permitted")
    if body.get("anthropic_version") != BEDROCK_ANTHROPIC_VERSION:
        raise _invalid(f"anthropic_version: must be {BEDROCK_ANTHROPIC_VERSION!r}")
    betas = body.get("anthropic_beta", [])
    if not isinstance(betas, list) or any(beta not in KNOWN_BETAS for beta in betas):
        raise _invalid("invalid beta flag")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _invalid("max_tokens: Field required (a positive integer)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages: Field required (a non-empty list)")

    # The Messages API merges consecutive turns of one role; Converse wants them alternating.
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise _invalid(f"messages.{index}.role: Input should be 'user' or 'assistant'")
        content = _content(message.get("content"), f"messages.{index}.content")
        if turns and turns[-1]["role"] == message["role"]:
            turns[-1]["content"].extend(content)
        else:
            turns.append({"role": message["role"], "content": content})

    request: dict[str, Any] = {"messages": turns}
    system = _system(body.get("system"))
    if system:
        request["system"] = system
    inference: dict[str, Any] = {"maxTokens": max_tokens}
    for source, target in (
        ("stop_sequences", "stopSequences"),
        ("temperature", "temperature"),
        ("top_p", "topP"),
    ):
        if body.get(source) is not None:
            inference[target] = body[source]
    request["inferenceConfig"] = inference
    tool_config = _tools(body.get("tools"), body.get("tool_choice"))
    if tool_config:
        request["toolConfig"] = tool_config
    thinking = body.get("thinking")
    if isinstance(thinking, dict):
        if thinking.get("type") == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or budget < 1024:
                raise _invalid(
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
                )
            if budget >= max_tokens:
                raise _invalid("`max_tokens` must be greater than `thinking.budget_tokens`.")
        request["additionalModelRequestFields"] = {"thinking": thinking}
    return request


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "output_tokens": usage.output_tokens,
    }


def message(answer: ConverseAnswer, model_id: str, message_id: str) -> dict[str, Any]:
    """The non-stream InvokeModel answer: Anthropic's message object."""
    content: list[dict[str, Any]] = []
    for block in answer.blocks:
        if block.kind == "text":
            content.append({"type": "text", "text": block.text})
        elif block.kind == "reasoning":
            content.append({"type": "thinking", "thinking": block.text, "signature": block.signature})
        elif block.kind == "redacted":
            content.append({"type": "redacted_thinking", "data": block.data})
        else:
            content.append(
                {"type": "tool_use", "id": block.tool_use_id, "name": block.name, "input": block.input}
            )
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": anthropic_model_name(model_id),
        "content": content,
        "stop_reason": answer.stop_reason,
        "stop_sequence": answer.stop_sequence,
        "usage": _usage(answer.usage),
    }


def events(answer: ConverseAnswer, model_id: str, message_id: str) -> Iterator[tuple[bool, dict[str, Any]]]:
    """The stream's Anthropic events in order, each flagged True if it is a generated delta.

    The final ``message_stop`` is left to the caller, which adds Bedrock's invocation metrics.
    """
    start_usage = {**_usage(answer.usage), "output_tokens": 1}
    yield (
        False,
        {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": anthropic_model_name(model_id),
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            },
        },
    )
    for index, block in enumerate(answer.blocks):
        if block.kind == "text":
            start: dict[str, Any] = {"type": "text", "text": ""}
        elif block.kind == "reasoning":
            start = {"type": "thinking", "thinking": "", "signature": ""}
        elif block.kind == "redacted":
            start = {"type": "redacted_thinking", "data": block.data}
        else:
            start = {"type": "tool_use", "id": block.tool_use_id, "name": block.name, "input": {}}
        yield False, {"type": "content_block_start", "index": index, "content_block": start}
        for chunk in block.chunks:
            if block.kind == "text":
                delta = {"type": "text_delta", "text": chunk}
            elif block.kind == "reasoning":
                delta = {"type": "thinking_delta", "thinking": chunk}
            else:
                delta = {"type": "input_json_delta", "partial_json": chunk}
            yield True, {"type": "content_block_delta", "index": index, "delta": delta}
        if block.kind == "reasoning":
            signature = {"type": "signature_delta", "signature": block.signature}
            yield False, {"type": "content_block_delta", "index": index, "delta": signature}
        yield False, {"type": "content_block_stop", "index": index}
    yield (
        False,
        {
            "type": "message_delta",
            "delta": {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence},
            "usage": {"output_tokens": answer.usage.output_tokens},
        },
    )
