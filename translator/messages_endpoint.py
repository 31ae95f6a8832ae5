"""`POST /v1/messages` and `/v1/messages/count_tokens`: Anthropic's Messages API on Bedrock.

Claude models are called with InvokeModel / InvokeModelWithResponseStream, which take
Anthropic's body almost verbatim (`anthropic_bedrock.py` bridges the differences), so every
Messages feature Bedrock has (tools, thinking with signatures, images, `cache_control`,
system blocks, betas) works as at Anthropic. Other models are refused with a 400 naming
`/v1/chat/completions`, which serves every model.

If Bedrock answers "invalid beta flag" (the betas it takes vary by model and over time), the
call is made once more without betas: the request then works, minus the beta features.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson

from core.catalogue import ResolvedModel, base_model_id
from core.usage import UsageEvent
from translator.anthropic_bedrock import (
    AnthropicRequest,
    AnthropicStream,
    count_tokens_body,
    message_body,
    parse_betas,
)
from translator.asgi import Reply, Request, send_json
from translator.bedrock_errors import BedrockError
from translator.converse_helpers import InvalidRequest, without_media
from translator.gateway import Gateway, estimate_output, estimate_tokens
from translator.sse import ANTHROPIC_KEEPALIVE, SseResponse, relaying

__all__ = ["count_tokens", "messages"]

log = logging.getLogger("translator.messages")

_T = TypeVar("_T")


def _parse(request: Request, raw: bytes, *, count_tokens: bool = False) -> AnthropicRequest:
    try:
        return AnthropicRequest.parse(raw, count_tokens=count_tokens)
    except InvalidRequest as error:
        # Anthropic's error shape has no `param`: the message names the field, as Anthropic's do.
        message = error.message
        if error.param and not message.startswith(error.param.split(".")[0]):
            message = f"{error.param}: {message}"
        raise Reply.error(request.path, error.status, message) from None


def _claude(request: Request, resolved: ResolvedModel, model: str) -> None:
    if resolved.entry.provider != "anthropic":
        raise Reply.error(
            request.path,
            400,
            f"The model '{model}' is not a Claude model: /v1/messages serves Anthropic models only. "
            "Call it on /v1/chat/completions, which serves every model.",
            param="model",
        )


async def _with_beta_retry(
    call: Callable[[bytes], Awaitable[_T]], body: dict[str, object], bare: Callable[[], dict[str, object]]
) -> _T:
    try:
        return await call(orjson.dumps(body))
    except BedrockError as error:
        if "anthropic_beta" not in body or "invalid beta flag" not in error.message:
            raise
        log.warning("Bedrock refused the betas %s; calling again without betas", body["anthropic_beta"])
        return await call(orjson.dumps(bare()))


async def messages(gateway: Gateway, request: Request) -> None:
    key_id = request.caller()
    raw = await request.body()
    chat = _parse(request, raw)
    resolved = gateway.resolve(request.path, chat.model, key_id)
    _claude(request, resolved, chat.model)
    betas = parse_betas([request.header(b"anthropic-beta") or ""])
    body, dropped = chat.to_bedrock(resolved.entry, betas)
    output_sent = body["max_tokens"]
    assert isinstance(output_sent, int)
    gateway.check_admitted(
        request, "anthropic.messages", chat.body, chat.model, chat.size, resolved, output_sent
    )
    if dropped:
        log.debug("dropped betas Bedrock does not take for %s: %s", resolved.entry.name, dropped)

    def bare() -> dict[str, object]:
        return chat.to_bedrock(resolved.entry, [])[0]

    event = gateway.usage_event(
        request,
        chat.model,
        resolved,
        stream=chat.stream,
        prompt=chat.last_user_text(),
        whole_prompt=without_media(chat.whole_prompt()) if b"base64" in raw else chat.whole_prompt(),
        api="anthropic.messages",
    )
    model_id = resolved.bedrock_id
    if not chat.stream:
        try:
            result = await _with_beta_retry(lambda b: gateway.bedrock.invoke_model(model_id, b), body, bare)
        except BedrockError as error:
            raise gateway.bedrock_reply(request.path, error) from None
        answer, text, usage = message_body(result.body, chat.model)
        event.completion = text
        event.input_tokens = usage.input if usage.reported else result.input_tokens or 0
        event.output_tokens = usage.output if usage.reported else result.output_tokens or 0
        event.cache_read_tokens, event.cache_write_tokens = usage.cache_read, usage.cache_write
        event.first_byte_latency_ms = result.first_byte_ms
        event.invocation_latency_ms = result.invocation_latency_ms
        # Billed before the answer is sent: a client that goes away now still pays.
        gateway.submit(request, event)
        await send_json(request.send, 200, answer)
        return

    sse = SseResponse(request.send, ANTHROPIC_KEEPALIVE, gateway.settings.sse_keepalive_s)
    gateway.journal_call(request, event)
    try:
        upstream = await sse.wait(
            _with_beta_retry(lambda b: gateway.bedrock.invoke_model_stream(model_id, b), body, bare)
        )
    except BedrockError as error:
        sse.stop_keepalive()
        if not sse.started:
            raise gateway.bedrock_reply(request.path, error) from None
        await sse.end(AnthropicStream.error_frame(error.status, error.client_message))
        return
    frames = AnthropicStream(chat.model)
    try:
        async with relaying(sse, upstream, request.receive, event):
            try:
                async for batch in upstream.anthropic_event_batches():
                    # The events that arrived together go out in one write.
                    out = [frame for payload in batch for frame in frames.on_event(payload)]
                    if out:
                        gateway.journal_sent(request, frames.generated, frames.usage)
                        await sse.write(b"".join(out))
            except BedrockError as error:
                # Ends the stream with Anthropic's error event; the SDK raises on it, so the
                # client knows the answer is incomplete.
                event.status = "error"
                upstream.finished = True
                await sse.end(AnthropicStream.error_frame(error.status, error.client_message))
                return
            upstream.finished = True
            if not frames.finished:
                # Bedrock ended the stream without message_stop: an incomplete answer.
                event.status = "error"
                await sse.end(AnthropicStream.error_frame(502, "Bedrock ended the stream early."))
                return
            await sse.end()
    finally:
        _finish_stream_event(gateway, request, event, frames, upstream.first_byte_ms)


def _finish_stream_event(
    gateway: Gateway, request: Request, event: UsageEvent, frames: AnthropicStream, first_byte_ms: int | None
) -> None:
    """Record whatever the stream produced; always called, however the stream ended."""
    event.completion = frames.completion
    event.first_byte_latency_ms = first_byte_ms
    event.invocation_latency_ms = frames.invocation_latency_ms
    usage = frames.usage
    event.input_tokens, event.cache_read_tokens, event.cache_write_tokens = (
        usage.input,
        usage.cache_read,
        usage.cache_write,
    )
    if usage.reported:
        event.output_tokens = usage.output
    else:
        # The final usage never arrived (the stream broke or the client left): message_start
        # gave the input; the output is our estimate, and the thread says so.
        event.estimated = True
        if not usage.input:
            event.input_tokens = request.input_estimate  # as in chat_completions.py
        event.output_tokens = max(usage.output, estimate_output(request, "".join(frames.generated)))
    gateway.submit(request, event)


async def count_tokens(gateway: Gateway, request: Request) -> None:
    """`{"input_tokens": N}` from Bedrock's CountTokens (free: no usage event)."""
    key_id = request.caller()
    chat = _parse(request, await request.body(), count_tokens=True)
    resolved = gateway.resolve(request.path, chat.model, key_id)
    _claude(request, resolved, chat.model)
    body, _ = chat.to_bedrock(resolved.entry, parse_betas([request.header(b"anthropic-beta") or ""]))
    body.pop("anthropic_beta", None)
    # CountTokens takes only bare foundation-model ids, never inference profiles.
    model_id = base_model_id(resolved.entry.base_id)
    try:
        tokens = await gateway.bedrock.count_tokens(model_id, count_tokens_body(body))
    except BedrockError as error:
        if error.name != "ValidationException" or "counting tokens" not in error.message:
            raise gateway.bedrock_reply(request.path, error) from None
        # Some models (the newest, profile-only ones) cannot be counted: an estimate is what
        # Claude Code itself would fall back to.
        tokens = estimate_tokens(orjson.dumps(chat.whole_prompt()).decode())
    await send_json(request.send, 200, {"input_tokens": tokens})
