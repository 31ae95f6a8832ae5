"""OpenAI Embeddings ⇄ Bedrock InvokeModel for Titan Text v2 and Cohere Embed (pure)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest

from core.catalogue import CATALOGUE, ModelEntry
from translator.openai_embeddings_bedrock import EmbeddingsRequest, embeddings_body, vectors_from_bedrock


def entry(name: str) -> ModelEntry:
    found = CATALOGUE.entry(name)
    assert found is not None
    return found


def titan(text: str, dimensions: int) -> dict[str, Any]:
    return {"inputText": text, "dimensions": dimensions, "normalize": True}


def body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "m", "input": "a", **fields})


def parse(**fields: Any) -> EmbeddingsRequest:
    return EmbeddingsRequest.parse(orjson.dumps({"model": "m", "input": "hello", **fields}))


@pytest.mark.parametrize(
    ("model", "fields", "bodies"),
    [
        pytest.param("titan-embed-text-v2", {}, [titan("hello", 1024)], id="titan-single"),
        pytest.param("titan-embed-text-v2", {"input": ["a", "b"], "dimensions": 256},
                     [titan("a", 256), titan("b", 256)], id="titan-one-call-per-text"),
        pytest.param("cohere-embed-english-v3", {"input": ["a", "b"], "input_type": "search_query"},
                     [{"texts": ["a", "b"], "input_type": "search_query", "embedding_types": ["float"]}],
                     id="cohere-batch"),
        pytest.param("cohere-embed-v4", {"dimensions": 256},
                     [{"texts": ["hello"], "input_type": "search_document", "embedding_types": ["float"],
                       "output_dimension": 256}], id="cohere-v4-dimensions"),
        pytest.param("cohere-embed-english-v3", {"dimensions": 1024},
                     [{"texts": ["hello"], "input_type": "search_document", "embedding_types": ["float"]}],
                     id="cohere-v3-its-own-dimensions"),
    ],
)  # fmt: skip
def test_bedrock_bodies(model: str, fields: dict[str, Any], bodies: list[dict[str, Any]]) -> None:
    assert [orjson.loads(b) for b in parse(**fields).bedrock_bodies(entry(model))] == bodies


def test_cohere_batches_of_96() -> None:
    bodies = parse(input=[str(i) for i in range(200)]).bedrock_bodies(entry("cohere-embed-multilingual-v3"))
    assert [len(orjson.loads(b)["texts"]) for b in bodies] == [96, 96, 8]


@pytest.mark.parametrize(
    ("fields", "model", "param"),
    [
        pytest.param({"dimensions": 300}, "titan-embed-text-v2", "dimensions", id="titan-dimensions"),
        pytest.param({"dimensions": 256}, "cohere-embed-english-v3", "dimensions", id="cohere-v3-dimensions"),
        pytest.param({"dimensions": 100}, "cohere-embed-v4", "dimensions", id="cohere-v4-dimensions"),
    ],
)
def test_model_specific_errors(fields: dict[str, Any], model: str, param: str) -> None:
    with pytest.raises(Exception) as caught:
        parse(**fields).bedrock_bodies(entry(model))
    assert getattr(caught.value, "param", None) == param


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        pytest.param(b"nope", None, id="not-json"),
        pytest.param(b"[]", "body", id="not-object"),
        pytest.param(orjson.dumps({"input": "x"}), "model", id="no-model"),
        pytest.param(orjson.dumps({"model": "m"}), "input", id="no-input"),
        pytest.param(orjson.dumps({"model": "m", "input": []}), "input", id="empty-list"),
        pytest.param(orjson.dumps({"model": "m", "input": [1, 2]}), "input[0]", id="token-ids"),
        pytest.param(orjson.dumps({"model": "m", "input": ["a", " "]}), "input[1]", id="blank"),
        pytest.param(body(encoding_format="hex"), "encoding_format", id="encoding"),
        pytest.param(body(dimensions=0), "dimensions", id="dimensions"),
        pytest.param(body(input_type="x"), "input_type", id="input-type"),
    ],
)  # fmt: skip
def test_invalid_requests(raw: bytes, param: str | None) -> None:
    with pytest.raises(Exception) as caught:
        EmbeddingsRequest.parse(raw)
    assert getattr(caught.value, "param", "missing") == param
    assert getattr(caught.value, "status", None) == 400


def test_vectors_from_titan_and_cohere() -> None:
    titan = entry("titan-embed-text-v2")
    assert vectors_from_bedrock(titan, {"embedding": [0.5], "inputTextTokenCount": 2}) == ([[0.5]], 2)
    assert vectors_from_bedrock(titan, {"embeddingsByType": {"float": [0.25]}, "embedding": [9]}) == (
        [[0.25]],
        None,
    )
    cohere = entry("cohere-embed-english-v3")
    assert vectors_from_bedrock(cohere, {"embeddings": {"float": [[1.0], [2.0]]}}) == ([[1.0], [2.0]], None)
    assert vectors_from_bedrock(cohere, {"embeddings": [[3.0]]}) == ([[3.0]], None)


def test_embeddings_body_in_float_and_base64() -> None:
    floats = embeddings_body("m", [[0.5, -1.0]], "float", 3)
    assert floats == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]}],
        "model": "m",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }
    packed = embeddings_body("m", [[0.5, -1.0]], "base64", 3)["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(packed)) == (0.5, -1.0)


def test_user_is_kept() -> None:
    assert parse(user="u-1").user == "u-1" and parse(user=5).user is None
