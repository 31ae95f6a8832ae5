"""OpenAI Embeddings ⇄ Bedrock InvokeModel (Titan Text Embeddings v2, Cohere Embed): pure conversion.

- Titan embeds one text per call: a batch of N inputs is N calls (made concurrently by the
  endpoint). `dimensions` must be 256, 512 or 1024; vectors are normalised, as OpenAI's are.
- Cohere embeds up to 96 texts per call; `input_type` defaults to `search_document` (a
  client may send `input_type` to choose). Embed v3 has 1024 dimensions only; Embed v4
  takes 256, 512, 1024 or 1536.
- `encoding_format: base64` (what the OpenAI Python SDK asks for by default) is the vector as
  little-endian float32 bytes, base64-encoded.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import Any

import orjson

from core.catalogue import ModelEntry
from translator.converse_helpers import InvalidRequest, json_body, require

__all__ = ["EmbeddingsRequest", "embeddings_body", "vectors_from_bedrock"]

_TITAN_DIMENSIONS = (256, 512, 1024)
_COHERE_V4_DIMENSIONS = (256, 512, 1024, 1536)
_COHERE_BATCH = 96
_COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")


def _is_titan(entry: ModelEntry) -> bool:
    return "titan-embed" in entry.base_id


@dataclass(slots=True)
class EmbeddingsRequest:
    """A validated `/v1/embeddings` request."""

    model: str
    texts: list[str]
    encoding_format: str = "float"
    dimensions: int | None = None
    input_type: str = "search_document"
    user: str | None = None
    size: int = 0
    """What bounds the inputs' tokens (`core.admission.ParsedBody.size`)."""

    @classmethod
    def parse(cls, raw: bytes) -> EmbeddingsRequest:
        parsed = json_body(raw)
        body, model = parsed.body, parsed.model
        value = body.get("input")
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not texts:
            raise InvalidRequest("input must be a string or a non-empty list of strings", "input")
        for index, text in enumerate(texts):
            # Token-id arrays are OpenAI tokenizer ids, meaningless to Bedrock's models.
            require(
                isinstance(text, str),
                "input must be text (token arrays are not supported)",
                f"input[{index}]",
            )
            require(text.strip() != "", "input must not be empty", f"input[{index}]")
        encoding = body.get("encoding_format") or "float"
        require(
            encoding in ("float", "base64"), "encoding_format must be 'float' or 'base64'", "encoding_format"
        )
        dimensions = body.get("dimensions")
        require(
            dimensions is None
            or (isinstance(dimensions, int) and not isinstance(dimensions, bool) and dimensions > 0),
            "dimensions must be a positive integer",
            "dimensions",
        )
        input_type = body.get("input_type") or "search_document"
        require(
            input_type in _COHERE_INPUT_TYPES,
            f"input_type must be one of {', '.join(_COHERE_INPUT_TYPES)}",
            "input_type",
        )
        user = body.get("user")
        return cls(
            model=model,
            texts=texts,
            encoding_format=encoding,
            dimensions=dimensions,
            input_type=input_type,
            user=user if isinstance(user, str) else None,
            size=parsed.size,
        )

    def bedrock_bodies(self, entry: ModelEntry) -> list[bytes]:
        """The InvokeModel bodies, in order; together they embed every input once."""
        if _is_titan(entry):
            dimensions = self.dimensions or 1024
            if dimensions not in _TITAN_DIMENSIONS:
                raise InvalidRequest(f"{self.model} supports dimensions 256, 512 or 1024", "dimensions")
            return [
                orjson.dumps({"inputText": text, "dimensions": dimensions, "normalize": True})
                for text in self.texts
            ]
        extra: dict[str, Any] = {}
        if self.dimensions is not None:
            if "embed-v4" in entry.base_id:
                if self.dimensions not in _COHERE_V4_DIMENSIONS:
                    raise InvalidRequest(
                        f"{self.model} supports dimensions 256, 512, 1024 or 1536", "dimensions"
                    )
                extra["output_dimension"] = self.dimensions
            elif self.dimensions != 1024:
                raise InvalidRequest(f"{self.model} has 1024 dimensions only", "dimensions")
        return [
            orjson.dumps(
                {
                    "texts": self.texts[start : start + _COHERE_BATCH],
                    "input_type": self.input_type,
                    "embedding_types": ["float"],
                    **extra,
                }
            )
            for start in range(0, len(self.texts), _COHERE_BATCH)
        ]


def vectors_from_bedrock(entry: ModelEntry, response: dict[str, Any]) -> tuple[list[list[float]], int | None]:
    """One InvokeModel answer's vectors, and its token count when the body reports one."""
    if _is_titan(entry):
        by_type = response.get("embeddingsByType")
        vector = by_type.get("float") if isinstance(by_type, dict) else None
        vector = vector or response.get("embedding") or []
        tokens = response.get("inputTextTokenCount")
        return [list(vector)], int(tokens) if isinstance(tokens, int) else None
    embeddings = response.get("embeddings")
    if isinstance(embeddings, dict):
        embeddings = embeddings.get("float")
    return [list(v) for v in embeddings or []], None


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def embeddings_body(model: str, vectors: list[list[float]], encoding: str, tokens: int) -> dict[str, Any]:
    """OpenAI's embeddings list."""
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": _encode(vector, encoding)}
            for index, vector in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
