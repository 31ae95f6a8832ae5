"""InvokeModel for embedding models: Amazon Titan Text Embeddings v2 and Cohere Embed (pure).

The vectors are deterministic (derived from a hash of each text) and unit length, so equal
texts embed equally and tests can compare them. Token counts are ``ceil(len(text) / 4)``,
at least 1, reported as Bedrock reports them: in the body (Titan's ``inputTextTokenCount``)
and in the ``X-Amzn-Bedrock-Input-Token-Count`` header (both models).
"""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Any

from .errors import SimulatedError

__all__ = ["embed", "is_embedding_model"]

_TITAN_DIMENSIONS = (256, 512, 1024)
_COHERE_V4_DIMENSIONS = (256, 512, 1024, 1536)
_COHERE_INPUT_TYPES = frozenset({"search_document", "search_query", "classification", "clustering"})
_COHERE_MAX_TEXTS = 96
_COHERE_TYPES = frozenset({"float", "int8", "uint8", "binary", "ubinary"})


def _invalid(message: str) -> SimulatedError:
    return SimulatedError("ValidationException", message)


def is_embedding_model(model_id: str) -> bool:
    return ".titan-embed-text-v2" in f".{model_id}" or ".cohere.embed-" in f".{model_id}"


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def _vector(text: str, dimensions: int) -> list[float]:
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend(v / 2**31 - 1.0 for v in struct.unpack(">8I", digest))
        counter += 1
    del values[dimensions:]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def _titan(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    text = body.get("inputText")
    if not isinstance(text, str) or not text:
        raise _invalid("Malformed input request: required key [inputText] not found")
    extra = set(body) - {"inputText", "dimensions", "normalize", "embeddingTypes"}
    if extra:
        raise _invalid(f"Malformed input request: extraneous key [{sorted(extra)[0]}] is not permitted")
    dimensions = body.get("dimensions", 1024)
    if dimensions not in _TITAN_DIMENSIONS:
        raise _invalid("Malformed input request: dimensions must be one of 256, 512, 1024")
    types = body.get("embeddingTypes", ["float"])
    if not isinstance(types, list) or not types or not set(types) <= {"float", "binary"}:
        raise _invalid("Malformed input request: embeddingTypes must be a list of float, binary")
    vector = _vector(text, dimensions)
    by_type: dict[str, Any] = {}
    if "float" in types:
        by_type["float"] = vector
    if "binary" in types:
        by_type["binary"] = [1 if v > 0 else 0 for v in vector]
    tokens = _tokens(text)
    response = {"embedding": vector, "inputTextTokenCount": tokens, "embeddingsByType": by_type}
    return response, tokens


def _cohere(model_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    texts = body.get("texts")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise _invalid("Malformed input request: texts must be a non-empty list of strings")
    if len(texts) > _COHERE_MAX_TEXTS:
        raise _invalid(f"Malformed input request: at most {_COHERE_MAX_TEXTS} texts per call")
    if body.get("input_type") not in _COHERE_INPUT_TYPES:
        raise _invalid(
            "Malformed input request: input_type must be one of " + ", ".join(sorted(_COHERE_INPUT_TYPES))
        )
    v4 = "embed-v4" in model_id
    dimensions = 1536 if v4 else 1024
    if "output_dimension" in body:
        if not v4 or body["output_dimension"] not in _COHERE_V4_DIMENSIONS:
            raise _invalid("Malformed input request: output_dimension is not supported for this model")
        dimensions = body["output_dimension"]
    types = body.get("embedding_types")
    if types is not None and (not isinstance(types, list) or not set(types) <= _COHERE_TYPES):
        raise _invalid("Malformed input request: embedding_types has an unknown type")
    vectors = [_vector(text, dimensions) for text in texts]
    response: dict[str, Any] = {
        "id": hashlib.sha256("\0".join(texts).encode()).hexdigest()[:36],
        "texts": texts,
    }
    if types is None:
        response["response_type"] = "embeddings_floats"
        response["embeddings"] = vectors
    else:
        by_type: dict[str, Any] = {}
        for kind in types:
            if kind == "float":
                by_type[kind] = vectors
            else:
                by_type[kind] = [[max(-128, min(127, int(v * 127))) for v in vector] for vector in vectors]
        response["response_type"] = "embeddings_by_type"
        response["embeddings"] = by_type
    return response, sum(_tokens(text) for text in texts)


def embed(model_id: str, body: Any) -> tuple[dict[str, Any], int]:
    """(response body, input tokens) for an embedding InvokeModel call."""
    if not isinstance(body, dict):
        raise _invalid("Malformed input request, please reformat your input and try again.")
    if "titan-embed-text-v2" in model_id:
        return _titan(body)
    return _cohere(model_id, body)
