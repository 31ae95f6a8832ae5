"""What more than one translator pair needs: request errors, image checks, Bedrock token usage.

Pure: no I/O. Each pair (`openai_bedrock.py`, `anthropic_bedrock.py`,
`openai_embeddings_bedrock.py`) imports from here, never from another pair's module.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from core.admission import BodyRefused, ParsedBody, parse_json_object

__all__ = [
    "CACHE_POINT",
    "IMAGE_MEDIA_TYPES",
    "MAX_IMAGE_BYTES",
    "InvalidRequest",
    "TokenUsage",
    "check_image_data",
    "json_body",
    "require",
    "without_media",
]

MAX_IMAGE_BYTES = 3_750_000
"""Bedrock's limit for one image (3.75 MB)."""

IMAGE_MEDIA_TYPES = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
"""Media types Bedrock accepts → Converse's image `format`."""

CACHE_POINT: dict[str, Any] = {"cachePoint": {"type": "default"}}


class InvalidRequest(Exception):
    """The client's request is malformed; `param` names the offending field."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


def require(condition: bool, message: str, param: str | None) -> None:
    if not condition:
        raise InvalidRequest(message, param)


def json_body(raw: bytes, model_message: str = "model is required") -> ParsedBody:
    """A request body that must be a JSON object naming a model (and its measured size).

    The same parse authz reserved the call's cost from (`core.admission`), and the same errors.
    """
    try:
        return parse_json_object(raw, model_message)
    except BodyRefused as refusal:
        raise InvalidRequest(refusal.message, refusal.param) from None


def without_media(value: Any) -> Any:
    """A copy of a prompt for the chat log with each inline image's or document's data (base64,
    up to megabytes) replaced by a short note of what it was: the log keeps the words, and a
    usage event stays small enough to ship and to store."""
    if isinstance(value, str):
        if value.startswith("data:") and ";base64," in value:
            kind, _, data = value[5:].partition(";base64,")
            return f"[{kind}, {len(data) * 3 // 4} bytes, not kept]"
        return value
    if isinstance(value, list):
        return [without_media(item) for item in value]
    if isinstance(value, dict):
        source = value.get("source")
        if (
            isinstance(source, dict)
            and source.get("type") == "base64"
            and isinstance(source.get("data"), str)
        ):
            kind = source.get("media_type") or "data"
            data = source["data"]
            note = f"[{kind}, {len(data) * 3 // 4} bytes, not kept]"
            return {**value, "source": {**source, "data": note}}
        return {key: without_media(item) for key, item in value.items()}
    return value


def check_image_data(data: Any, param: str) -> None:
    """Base64 image data must decode and fit Bedrock's limit (a clear 400 rather than Bedrock's)."""
    require(isinstance(data, str), "image data must be a base64 string", param)
    try:
        raw_size = len(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        raise InvalidRequest("image data is not valid base64", param) from None
    if raw_size > MAX_IMAGE_BYTES:
        raise InvalidRequest(f"image is {raw_size} bytes; the limit is {MAX_IMAGE_BYTES} bytes", param)


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
        """From Converse's `usage` (`inputTokens`, `cacheReadInputTokens`, …)."""
        return cls(
            input=int(usage.get("inputTokens") or 0),
            output=int(usage.get("outputTokens") or 0),
            cache_read=int(usage.get("cacheReadInputTokens") or 0),
            cache_write=int(usage.get("cacheWriteInputTokens") or 0),
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
