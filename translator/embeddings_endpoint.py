"""`POST /v1/embeddings`: OpenAI Embeddings, served by Bedrock's embedding models (InvokeModel).

The conversion is pure (`openai_embeddings_bedrock.py`); this module makes the calls
(concurrently, when a batch needs several) and meters them like chat: one usage event per
request, with the input tokens Bedrock reported and no output tokens.
"""

from __future__ import annotations

import asyncio
import time

from translator.asgi import Reply, Request, send_json
from translator.bedrock_client import InvokeResult
from translator.bedrock_errors import BedrockError
from translator.converse_helpers import InvalidRequest
from translator.gateway import Gateway, estimate_tokens
from translator.openai_embeddings_bedrock import EmbeddingsRequest, embeddings_body, vectors_from_bedrock

__all__ = ["embeddings"]

_CONCURRENT_CALLS = 8
"""Bedrock calls one batch may have in flight (Titan embeds one text per call)."""


async def embeddings(gateway: Gateway, request: Request) -> None:
    key_id = request.caller()
    raw = await request.body()
    try:
        parsed = EmbeddingsRequest.parse(raw)
    except InvalidRequest as error:
        raise Reply.error(request.path, error.status, error.message, param=error.param) from None
    resolved = gateway.resolve(request.path, parsed.model, key_id, kind="embedding")
    # Nothing in the body but its size bounds an embedding call's cost.
    gateway.check_admitted(request, "openai.embeddings", {}, parsed.model, parsed.size, resolved, 0)
    try:
        bodies = parsed.bedrock_bodies(resolved.entry)
    except InvalidRequest as error:
        raise Reply.error(request.path, error.status, error.message, param=error.param) from None
    started = time.time()
    limit = asyncio.Semaphore(_CONCURRENT_CALLS)

    async def call(body: bytes) -> InvokeResult:
        async with limit:
            return await gateway.bedrock.invoke_model(resolved.bedrock_id, body)

    outcomes = await asyncio.gather(*(call(body) for body in bodies), return_exceptions=True)
    vectors: list[list[float]] = []
    tokens = 0
    failure: BedrockError | None = None
    results: list[InvokeResult] = []
    for outcome, body in zip(outcomes, bodies, strict=True):
        if isinstance(outcome, BedrockError):
            failure = failure or outcome
            continue
        if isinstance(outcome, BaseException):
            raise outcome
        results.append(outcome)
        batch, counted = vectors_from_bedrock(resolved.entry, outcome.body)
        vectors.extend(batch)
        reported = outcome.input_tokens if outcome.input_tokens is not None else counted
        tokens += reported if reported is not None else estimate_tokens(body.decode())
    event = gateway.usage_event(
        request,
        parsed.model,
        resolved,
        occurred_at=started,
        input_tokens=tokens,
        prompt=parsed.texts[0][:2000],
        first_byte_latency_ms=max((r.first_byte_ms for r in results), default=None),
        invocation_latency_ms=max((r.invocation_latency_ms or 0 for r in results), default=0) or None,
        status="ok" if failure is None else "error",
        api="openai.embeddings",
        user=parsed.user,
    )
    if failure is not None:
        # The calls that did succeed cost money at Bedrock: they are billed all the same.
        if results:
            gateway.submit(request, event)
        raise gateway.bedrock_reply(request.path, failure)
    gateway.submit(request, event)
    await send_json(request.send, 200, embeddings_body(parsed.model, vectors, parsed.encoding_format, tokens))
