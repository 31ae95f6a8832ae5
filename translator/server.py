"""The translator's HTTP server: a small ASGI app on uvicorn (uvloop, httptools).

It is plain ASGI rather than a framework because it sits on every request's path and has
few routes; the work per request is: read the body, translate, call Bedrock, stream the
answer back frame by frame (never buffered), and hand a usage event to the meter sink.

Envoy has already authenticated the caller: `x-brproxy-key-id` names the key.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from core.catalogue import CATALOGUE, Catalogue
from core.errors import openai_error
from core.internal_headers import KEY_ID, KEY_ROLE, ROLE_BOOTSTRAP
from core.settings import Settings
from core.usage import UsageEvent, new_event_id
from translator.bedrock_client import BedrockRuntime, BedrockStream
from translator.bedrock_errors import BedrockError
from translator.meter_sink import MeterSink
from translator.openai_bedrock import (
    ChatCompletionStream,
    InvalidRequest,
    OpenAIChatRequest,
    chat_completion,
)

__all__ = ["TranslatorApp"]

log = logging.getLogger("translator")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY_BYTES = 32 * 1024 * 1024
_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    # Tells proxies in front of us (nginx and friends) not to buffer the stream either.
    (b"x-accel-buffering", b"no"),
]


class _Reply(Exception):
    """Ends a request early with an error response."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or []


def _estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token) for calls Bedrock never reported."""
    return (len(text) + 3) // 4


class TranslatorApp:
    """ASGI application: OpenAI-compatible endpoints backed by Bedrock."""

    def __init__(self, settings: Settings, catalogue: Catalogue = CATALOGUE) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.bedrock: BedrockRuntime | None = None
        self.meter = MeterSink(settings.meter_url, settings.meter_flush_interval_ms)

    # --- ASGI plumbing --------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            await self._route(scope, receive, send)
        except _Reply as reply:
            await self._send_json(send, reply.status, reply.body, reply.headers)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    bedrock = BedrockRuntime.from_environment()
                    await bedrock.__aenter__()
                    await self.meter.start()
                except Exception as error:
                    await send(
                        {"type": "lifespan.startup.failed", "message": f"{type(error).__name__}: {error}"}
                    )
                    return
                self.bedrock = bedrock
                log.info("Bedrock endpoint %s (region %s)", bedrock.endpoint_url, bedrock.region)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.meter.close()
                if self.bedrock is not None:
                    await self.bedrock.__aexit__(None, None, None)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/health":
            await self._send_json(send, 200, {"status": "ok", "pending_usage_events": self.meter.pending})
            return
        headers = dict(scope["headers"])
        if path == "/v1/chat/completions":
            self._require_method(method, "POST")
            key_id = self._caller(headers)
            body = await self._read_body(receive)
            await self._chat_completions(key_id, headers, body, receive, send)
        elif path == "/v1/models":
            self._require_method(method, "GET")
            self._caller(headers)
            await self._send_json(send, 200, self._models())
        else:
            raise _Reply(404, openai_error(404, f"Unknown route {method} {path}.", code="unknown_url"))

    @staticmethod
    def _require_method(method: str, allowed: str) -> None:
        if method != allowed:
            raise _Reply(405, openai_error(405, f"Use {allowed} for this route.", code="method_not_allowed"))

    @staticmethod
    def _caller(headers: dict[bytes, bytes]) -> int:
        """The caller's key id, as authz vouched for it through Envoy."""
        raw = headers.get(KEY_ID.encode())
        if raw is None:
            raise _Reply(401, openai_error(401, "Missing API key."))
        if headers.get(KEY_ROLE.encode(), b"").decode() == ROLE_BOOTSTRAP:
            raise _Reply(403, openai_error(403, "The bootstrap admin key cannot call models."))
        return int(raw)

    @staticmethod
    async def _read_body(receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Reply(499, openai_error(400, "client disconnected"))
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise _Reply(413, openai_error(413, f"Request body over {MAX_BODY_BYTES} bytes."))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _send_json(
        send: Send, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        await send(
            {"type": "http.response.start", "status": status, "headers": _JSON_HEADERS + (extra or [])}
        )
        await send({"type": "http.response.body", "body": orjson.dumps(body)})

    # --- /v1/models -----------------------------------------------------------------------

    def _models(self) -> dict[str, Any]:
        data = [
            {
                "id": entry.name,
                "object": "model",
                "created": 1_700_000_000,
                "owned_by": entry.provider,
                "multiple": "vision" in entry.capabilities,
            }
            for entry in self.catalogue.chat_models()
        ]
        return {"object": "list", "data": data}

    # --- /v1/chat/completions -------------------------------------------------------------

    async def _chat_completions(
        self, key_id: int, headers: dict[bytes, bytes], raw: bytes, receive: Receive, send: Send
    ) -> None:
        try:
            request = OpenAIChatRequest.parse(raw)
            converse = request.to_converse()
        except InvalidRequest as error:
            raise _Reply(error.status, openai_error(error.status, error.message, param=error.param)) from None
        assert self.bedrock is not None
        resolved = self.catalogue.resolve(request.model, self.bedrock.region)
        if resolved is None:
            raise _Reply(
                404,
                openai_error(
                    404,
                    f"The model '{request.model}' does not exist or is not offered by this gateway.",
                    code="model_not_found",
                    param="model",
                ),
            )
        session = headers.get(b"session-id")
        event = UsageEvent(
            event_id=new_event_id(),
            key_id=key_id,
            model=request.model,
            bedrock_model_id=resolved.bedrock_id,
            occurred_at=time.time(),
            client_session_id=session.decode(errors="replace")[:200] if session else None,
            stream=request.stream,
            prompt=request.last_user_text(),
            whole_prompt=request.messages,
            user=request.user,
        )
        body = orjson.dumps(converse)
        completion_id = "chatcmpl-" + uuid.UUID(event.event_id).hex
        if request.stream:
            await self._stream_chat(request, resolved.bedrock_id, body, completion_id, event, receive, send)
        else:
            await self._complete_chat(request, resolved.bedrock_id, body, completion_id, event, send)

    async def _complete_chat(
        self,
        request: OpenAIChatRequest,
        model_id: str,
        body: bytes,
        completion_id: str,
        event: UsageEvent,
        send: Send,
    ) -> None:
        assert self.bedrock is not None
        try:
            response, first_byte_ms = await self.bedrock.converse(model_id, body)
        except BedrockError as error:
            raise self._bedrock_reply(error) from None
        answer, text, usage = chat_completion(completion_id, request.model, response)
        event.completion = text
        event.input_tokens, event.output_tokens = usage.input, usage.output
        event.cache_read_tokens, event.cache_write_tokens = usage.cache_read, usage.cache_write
        event.first_byte_latency_ms = first_byte_ms
        latency = (response.get("metrics") or {}).get("latencyMs")
        event.invocation_latency_ms = int(latency) if latency is not None else None
        # Billed before the answer is sent: a client that goes away now still pays.
        self.meter.submit(event)
        await self._send_json(send, 200, answer)

    async def _stream_chat(
        self,
        request: OpenAIChatRequest,
        model_id: str,
        body: bytes,
        completion_id: str,
        event: UsageEvent,
        receive: Receive,
        send: Send,
    ) -> None:
        assert self.bedrock is not None
        try:
            upstream = await self.bedrock.converse_stream(model_id, body)
        except BedrockError as error:
            raise self._bedrock_reply(error) from None
        frames = ChatCompletionStream(completion_id, request.model, request.include_usage)
        # uvicorn drops writes to a closed connection silently, so watch for the client
        # leaving and stop reading Bedrock then (what it produced so far is still billed).
        watcher = asyncio.create_task(self._close_on_disconnect(receive, upstream, event))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            await send({"type": "http.response.body", "body": frames.first_frame(), "more_body": True})
            try:
                async for event_type, payload in upstream.events():
                    for frame in frames.on_event(event_type, payload):
                        await send({"type": "http.response.body", "body": frame, "more_body": True})
            except BedrockError as error:
                # Ends the stream with an error frame, not a fake [DONE]: the client must
                # know the answer is incomplete.
                event.status = "error"
                upstream.finished = True
                frame = frames.error_frame(error.client_message, "server_error", error.name)
                await send({"type": "http.response.body", "body": frame, "more_body": False})
                return
            upstream.finished = True
            await send({"type": "http.response.body", "body": frames.done_frame(), "more_body": False})
        except (OSError, asyncio.CancelledError):
            event.status = "client_closed"
            raise
        finally:
            watcher.cancel()
            await upstream.close()
            self._finish_stream_event(event, frames, upstream)

    @staticmethod
    async def _close_on_disconnect(receive: Receive, upstream: BedrockStream, event: UsageEvent) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        # uvicorn also reports "disconnect" once the response is complete; only a
        # disconnect while Bedrock is still answering means the client left.
        if not upstream.finished:
            event.status = "client_closed"
            await upstream.close()

    def _finish_stream_event(
        self, event: UsageEvent, frames: ChatCompletionStream, upstream: BedrockStream
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
            event.input_tokens = _estimate_tokens(orjson.dumps(event.whole_prompt).decode())
            event.output_tokens = _estimate_tokens(event.completion)
        self.meter.submit(event)

    @staticmethod
    def _bedrock_reply(error: BedrockError) -> _Reply:
        headers = []
        if error.retry_after is not None:
            headers.append((b"retry-after", str(error.retry_after).encode()))
        code = error.name[:1].lower() + error.name[1:] if error.name else None
        return _Reply(error.status, openai_error(error.status, error.client_message, code=code), headers)
