"""`POST /v1/chat/completions`: OpenAI Chat Completions, served by Bedrock Converse.

The conversion itself is pure (`openai_bedrock.py`); this module does the I/O: read the
body, call Converse or ConverseStream, write the answer (streamed frame by frame, never
buffered), and hand the usage event to the meter however the call ended.
"""

from __future__ import annotations

import uuid

import orjson

from core.usage import UsageEvent
from translator.asgi import Reply, Request, send_json
from translator.bedrock_client import BedrockStream
from translator.bedrock_errors import BedrockError
from translator.converse_helpers import without_media
from translator.gateway import Gateway, estimate_output
from translator.openai_bedrock import ChatCompletionStream, InvalidRequest, OpenAIChatRequest, chat_completion
from translator.sse import OPENAI_KEEPALIVE, SseResponse, relaying

__all__ = ["chat_completions"]


async def chat_completions(gateway: Gateway, request: Request) -> None:
    key_id = request.caller()
    raw = await request.body()
    try:
        chat = OpenAIChatRequest.parse(raw)
        converse = chat.to_converse()
    except InvalidRequest as error:
        raise Reply.error(request.path, error.status, error.message, param=error.param) from None
    resolved = gateway.resolve(request.path, chat.model, key_id)
    try:
        chat.fit_to_model(converse, resolved.entry)
    except InvalidRequest as error:
        raise Reply.error(request.path, error.status, error.message, param=error.param) from None
    output_sent = converse["inferenceConfig"]["maxTokens"]
    gateway.check_admitted(request, "openai.chat", chat.body, chat.model, chat.size, resolved, output_sent)
    event = gateway.usage_event(
        request,
        chat.model,
        resolved,
        stream=chat.stream,
        prompt=chat.last_user_text(),
        # The chat log keeps the words; images only as a note (b"base64": nothing to strip).
        whole_prompt=without_media(chat.messages) if b"base64" in raw else chat.messages,
        user=chat.user,
    )
    body = orjson.dumps(converse)
    completion_id = "chatcmpl-" + uuid.UUID(event.event_id).hex
    if chat.stream:
        await _stream(gateway, request, chat, resolved.bedrock_id, body, completion_id, event)
    else:
        await _complete(gateway, request, chat, resolved.bedrock_id, body, completion_id, event)


async def _complete(
    gateway: Gateway,
    request: Request,
    chat: OpenAIChatRequest,
    model_id: str,
    body: bytes,
    completion_id: str,
    event: UsageEvent,
) -> None:
    try:
        response, first_byte_ms = await gateway.bedrock.converse(model_id, body)
    except BedrockError as error:
        raise gateway.bedrock_reply(request.path, error) from None
    answer, text, usage = chat_completion(completion_id, chat.model, response, json_tool=chat.json_tool)
    event.completion = text
    event.input_tokens, event.output_tokens = usage.input, usage.output
    event.cache_read_tokens, event.cache_write_tokens = usage.cache_read, usage.cache_write
    event.first_byte_latency_ms = first_byte_ms
    latency = (response.get("metrics") or {}).get("latencyMs")
    event.invocation_latency_ms = int(latency) if latency is not None else None
    # Billed before the answer is sent: a client that goes away now still pays.
    gateway.submit(request, event)
    await send_json(request.send, 200, answer)


async def _stream(
    gateway: Gateway,
    request: Request,
    chat: OpenAIChatRequest,
    model_id: str,
    body: bytes,
    completion_id: str,
    event: UsageEvent,
) -> None:
    sse = SseResponse(request.send, OPENAI_KEEPALIVE, gateway.settings.sse_keepalive_s)
    frames = ChatCompletionStream(completion_id, chat.model, chat.include_usage, json_tool=chat.json_tool)
    gateway.journal_call(request, event)
    try:
        upstream = await sse.wait(gateway.bedrock.converse_stream(model_id, body))
    except BedrockError as error:
        sse.stop_keepalive()
        if not sse.started:
            raise gateway.bedrock_reply(request.path, error) from None
        # Keep-alives already went out with a 200: the failure can only be an error frame.
        await sse.end(frames.error_frame(error.client_message, "server_error", error.name))
        return
    try:
        async with relaying(sse, upstream, request.receive, event):
            # The role frame goes out with the first events (Bedrock sends them as soon as
            # it answers); after that, each batch of events that arrived together is one write.
            out = [frames.first_frame()]
            try:
                async for batch in upstream.event_batches():
                    for event_type, payload in batch:
                        out.extend(frames.on_event(event_type, payload))
                    if out:
                        gateway.journal_sent(request, frames.generated, frames.usage)
                        await sse.write(b"".join(out))
                        out = []
            except BedrockError as error:
                # Ends the stream with an error frame, not a fake [DONE]: the client must
                # know the answer is incomplete.
                event.status = "error"
                upstream.finished = True
                out.append(frames.error_frame(error.client_message, "server_error", error.name))
                await sse.end(b"".join(out))
                return
            upstream.finished = True
            out.append(frames.done_frame())
            await sse.end(b"".join(out))
    finally:
        _finish_stream_event(gateway, request, event, frames, upstream)


def _finish_stream_event(
    gateway: Gateway,
    request: Request,
    event: UsageEvent,
    frames: ChatCompletionStream,
    upstream: BedrockStream,
) -> None:
    """Record whatever the stream produced; always called, however the stream ended."""
    event.completion = frames.completion
    event.first_byte_latency_ms = upstream.first_byte_ms
    event.invocation_latency_ms = frames.latency_ms
    usage = frames.usage
    if usage.reported:
        event.input_tokens, event.output_tokens = usage.input, usage.output
        event.cache_read_tokens, event.cache_write_tokens = usage.cache_read, usage.cache_write
    else:
        # Bedrock's usage report never arrived (the stream broke or the client left):
        # bill our estimate and say so on the thread.
        event.estimated = True
        # A quarter of what bounds the prompt: tools, schemas and system included, each image
        # at its bound rather than its base64 (as authz reserved it).
        event.input_tokens = request.input_estimate
        event.output_tokens = estimate_output(request, "".join(frames.generated))
    gateway.submit(request, event)
