"""OpenAI Embeddings through Envoy with the official SDK: Titan Text v2 and Cohere Embed, metered."""

from __future__ import annotations

import asyncio
import base64
import math
import struct
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from e2e_clients import async_openai_sdk, openai_sdk, session_thread
from stack_process import Stack

from core.catalogue import CATALOGUE
from core.pricing import fee_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def key(stack: Stack) -> dict[str, Any]:
    return stack.create_key("embedder", month_quota="1")


@pytest.fixture(scope="module")
def client(stack: Stack, key: dict[str, Any]) -> Iterator[openai.OpenAI]:
    with openai_sdk(stack, key["api_key"]) as sdk:
        yield sdk


def test_titan_single_input_default_base64_is_decoded_by_the_sdk(stack: Stack, client: openai.OpenAI) -> None:
    session = "emb-" + uuid.uuid4().hex
    # The SDK asks for base64 by default and decodes it to floats.
    result = client.embeddings.create(
        model="titan-embed-text-v2", input="hello world", extra_headers={"Session-Id": session}
    )
    assert result.object == "list" and result.model == "titan-embed-text-v2"
    vector = result.data[0].embedding
    assert len(vector) == 1024 and abs(math.sqrt(sum(v * v for v in vector)) - 1) < 1e-3
    assert result.usage.prompt_tokens == result.usage.total_tokens == 3
    row = session_thread(stack, session)
    assert row["api"] == "openai.embeddings" and (row["tokens_in"], row["tokens_out"]) == (3, 0)
    resolved = CATALOGUE.resolve("titan-embed-text-v2")
    assert resolved is not None and row["fee"] == fee_for(resolved.prices, 3, 0)


def test_titan_batch_dimensions_and_float_encoding(client: openai.OpenAI) -> None:
    result = client.embeddings.create(
        model="amazon.titan-embed-text-v2:0",
        input=["one", "two", "one"],
        dimensions=256,
        encoding_format="float",
    )
    assert [d.index for d in result.data] == [0, 1, 2]
    assert all(len(d.embedding) == 256 for d in result.data)
    assert result.data[0].embedding == result.data[2].embedding != result.data[1].embedding


def test_raw_base64_is_little_endian_float32(stack: Stack, key: dict[str, Any]) -> None:
    body = {"model": "titan-embed-text-v2", "input": "raw", "dimensions": 256}
    with stack.client(key["api_key"]) as http:
        floats = http.post("/v1/embeddings", json={**body, "encoding_format": "float"}).json()
        packed = http.post("/v1/embeddings", json={**body, "encoding_format": "base64"}).json()
    decoded = struct.unpack("<256f", base64.b64decode(packed["data"][0]["embedding"]))
    assert all(abs(a - b) < 1e-6 for a, b in zip(decoded, floats["data"][0]["embedding"], strict=True))


def test_cohere_batches_over_96_inputs(client: openai.OpenAI) -> None:
    texts = [f"text {i}" for i in range(100)]
    result = client.embeddings.create(model="cohere-embed-english-v3", input=texts)
    assert len(result.data) == 100 and all(len(d.embedding) == 1024 for d in result.data)
    assert result.usage.prompt_tokens == sum((len(t) + 3) // 4 for t in texts)
    v4 = client.embeddings.create(model="cohere-embed-v4", input=["a"], dimensions=512)
    assert len(v4.data[0].embedding) == 512


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        pytest.param({"model": "titan-embed-text-v2", "input": ""}, 400, "input[0]", id="empty-input"),
        pytest.param({"model": "titan-embed-text-v2", "input": [[1, 2]]}, 400, "input[0]", id="token-ids"),
        pytest.param({"model": "titan-embed-text-v2", "input": "x", "dimensions": 300}, 400, "dimensions",
                     id="titan-dimensions"),
        pytest.param({"model": "cohere-embed-english-v3", "input": "x", "dimensions": 256}, 400, "dimensions",
                     id="cohere-v3-dimensions"),
        pytest.param({"model": "claude-3-haiku", "input": "x"}, 400, "model", id="chat-model"),
        pytest.param({"model": "titan-embed-text-v1", "input": "x"}, 404, "model", id="unknown-model"),
    ],
)  # fmt: skip
def test_bad_requests(
    stack: Stack, key: dict[str, Any], body: dict[str, Any], status: int, param: str
) -> None:
    with stack.client(key["api_key"]) as http:
        response = http.post("/v1/embeddings", json=body)
    assert response.status_code == status
    assert response.json()["error"]["param"] == param


def test_embedding_model_on_chat_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="titan-embed-text-v2", messages=[{"role": "user", "content": "x"}]
        )
    assert "/v1/embeddings" in refused.value.message


def test_async_client(stack: Stack, key: dict[str, Any]) -> None:
    async def run() -> int:
        async with async_openai_sdk(stack, key["api_key"]) as sdk:
            result = await sdk.embeddings.create(model="cohere-embed-multilingual-v3", input=["x", "y"])
            return len(result.data)

    assert asyncio.run(run()) == 2
