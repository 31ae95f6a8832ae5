"""The simulator as a raw ASGI application speaking Bedrock Runtime's REST-JSON wire protocol.

No framework: routing is one split of the raw path, so a non-stream request costs little more
than the HTTP server's own parsing. Planning the answer is ``responses``' job, framing streamed
events is ``eventstream``'s, checking signatures is ``sigv4``'s; this module only reads the
request, applies them and writes bytes.

Routes::

    GET  /health                                         200 "ok", no authentication (for supervisors)
    POST /model/{modelId}/converse                       Converse
    POST /model/{modelId}/converse-stream                ConverseStream (application/vnd.amazon.eventstream)
    POST /model/{modelId}/invoke                         InvokeModel: Claude (Anthropic's Messages body)
                                                         and embeddings (Titan Text v2, Cohere Embed)
    POST /model/{modelId}/invoke-with-response-stream    InvokeModelWithResponseStream: Claude
    POST /model/{modelId}/count-tokens                   CountTokens (bare foundation-model ids only)

Anything else is 404 ``UnknownOperationException``, as AWS answers.
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

import orjson

from core.catalogue import CATALOGUE

from . import anthropic_messages
from .config import SimulatorConfig
from .embeddings import embed, is_embedding_model
from .errors import DEFAULT_MESSAGES, SimulatedError, error_type_header
from .eventstream import encode_event_message, encode_exception_message
from .responses import ConverseAnswer, PromptCache, converse, count_input_tokens
from .sigv4 import SigV4Verifier

__all__ = ["ASGIApp", "BedrockSimulator", "DroppedConnection", "create_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Base model ids and inference profile ids ("us.anthropic.claude-3-haiku-20240307-v1:0"), or the
# ARN of a foundation model, inference profile or provisioned model.
_MODEL_ID_RE = re.compile(
    r"(?:[a-z-]+\.)?[a-z0-9-]+\.[a-z0-9][a-z0-9.:-]*"
    r"|arn:aws(?:-[a-z-]+)?:bedrock:[a-z0-9-]*:[0-9]{0,12}:[a-z-]+/[A-Za-z0-9._:/-]+"
)
# Bedrock Runtime operations whose path the simulator recognises but does not implement yet:
# named in the 404 so a caller knows it reached the simulator and what is missing.
_NOT_SIMULATED = {
    b"apply-guardrail": "ApplyGuardrail",
    b"async-invoke": "StartAsyncInvoke",
}

_JSON = (b"content-type", b"application/json")
_EVENT_STREAM = (b"content-type", b"application/vnd.amazon.eventstream")
_PROFILE_PREFIXES = frozenset({"global", "us", "eu", "apac", "jp", "au", "us-gov"})
_HEALTH_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
_MESSAGE_START = encode_event_message("messageStart", b'{"role":"assistant"}')
_BLOCK_STOP = encode_event_message("contentBlockStop", b'{"contentBlockIndex":0}')


# Decoding and checking the id is done once per distinct path segment: clients reuse a few ids.
@lru_cache(maxsize=1024)
def _model_id(segment: bytes) -> str:
    model_id = unquote(segment.decode("latin-1"))
    if _MODEL_ID_RE.fullmatch(model_id) is None:
        raise SimulatedError("ValidationException", "The provided model identifier is invalid.")
    return model_id


class _Request:
    """What handlers need from one HTTP request."""

    __slots__ = ("body", "model_id", "request_id", "started")

    def __init__(self, model_id: str, body: bytes, request_id: bytes, started: float) -> None:
        self.model_id = model_id
        self.body = body
        self.request_id = request_id
        self.started = started

    def elapsed_ms(self) -> int:
        # Rounded up: asyncio may wake a sleep a fraction of a millisecond early, and a
        # requested latency of N ms must read as at least N.
        return math.ceil((time.perf_counter() - self.started) * 1000)


Handler = Callable[["BedrockSimulator", _Request, Receive, Send], Awaitable[None]]


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client went away first."""
    message = await receive()
    if message["type"] != "http.request":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    parts = [body]
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def _send_error(send: Send, error: SimulatedError, request_id: bytes) -> None:
    body = orjson.dumps({"message": error.message})
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                _JSON,
                (b"content-length", str(len(body)).encode()),
                (b"x-amzn-requestid", request_id),
                (b"x-amzn-errortype", error_type_header(error.name).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _context_window(model_id: str) -> int:
    """The most prompt tokens the model takes (a million where it is not one we know)."""
    resolved = CATALOGUE.resolve(model_id)
    return resolved.entry.context_window if resolved is not None else 1_000_000


def _parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise SimulatedError(
            "ValidationException", "Malformed input request, please reformat your input and try again."
        ) from None


class BedrockSimulator:
    """ASGI callable; build it with ``create_app``."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.verifier = SigV4Verifier(
            access_key_id=config.access_key_id,
            secret_access_key=config.secret_access_key,
            region=config.region,
            max_clock_skew_s=config.max_clock_skew_s,
        )
        self.cache = PromptCache()
        # One entry per operation.
        self.operations: dict[bytes, Handler] = {
            b"converse": BedrockSimulator._converse,
            b"converse-stream": BedrockSimulator._converse_stream,
            b"invoke": BedrockSimulator._invoke,
            b"invoke-with-response-stream": BedrockSimulator._invoke_stream,
            b"count-tokens": BedrockSimulator._count_tokens,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        request_id = str(uuid.uuid4()).encode()
        if raw_path == b"/health" and scope["method"] in ("GET", "HEAD"):
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*_HEALTH_HEADERS, (b"x-amzn-requestid", request_id)],
                }
            )
            await send({"type": "http.response.body", "body": b"ok", "more_body": False})
            return

        body = await _read_body(receive)
        if body is None:
            return
        try:
            # Authentication comes first, as at AWS: an unsigned call to a wrong path is refused
            # for its missing signature, not reported as an unknown operation.
            self.verifier.verify(
                method=scope["method"],
                raw_path=raw_path.decode("latin-1"),
                query_string=scope.get("query_string", b"").decode("latin-1"),
                headers=scope["headers"],
                body=body,
            )
            handler, model_id = self._route(scope["method"], raw_path)
            request = _Request(model_id, body, request_id, started)
        except SimulatedError as error:
            await _send_error(send, error, request_id)
            return
        await handler(self, request, receive, send)

    def _route(self, method: str, raw_path: bytes) -> tuple[Handler, str]:
        parts = raw_path.split(b"/")
        handler = None
        if len(parts) == 4 and parts[0] == b"" and parts[1] == b"model" and method == "POST":
            handler = self.operations.get(parts[3])
        if handler is None:
            operation = _NOT_SIMULATED.get(parts[3]) if len(parts) == 4 else None
            if operation is not None:
                raise SimulatedError(
                    "UnknownOperationException", f"{operation} is not implemented by the Bedrock simulator."
                )
            raise SimulatedError("UnknownOperationException", "UnknownOperationException")
        return handler, _model_id(parts[2])

    def _plan(self, request: _Request) -> ConverseAnswer:
        return converse(
            _parse_json(request.body),
            default_output_tokens=self.config.output_tokens,
            cache=self.cache,
            context_window=_context_window(request.model_id),
        )

    def _plan_anthropic(self, request: _Request) -> ConverseAnswer:
        if "anthropic." not in request.model_id:
            raise SimulatedError(
                "UnknownOperationException",
                f"InvokeModel for {request.model_id} is not implemented by the Bedrock simulator "
                "(Claude and embedding models only).",
            )
        converse_request = anthropic_messages.to_converse(_parse_json(request.body))
        return converse(
            converse_request,
            default_output_tokens=self.config.output_tokens,
            cache=self.cache,
            context_window=_context_window(request.model_id),
        )

    def _rate(self, answer: ConverseAnswer) -> float:
        rate = answer.directives.tokens_per_second
        return self.config.tokens_per_second if rate is None else rate

    def _latency_s(self, answer: ConverseAnswer) -> float:
        latency_ms = answer.directives.latency_ms
        return (self.config.latency_ms if latency_ms is None else latency_ms) / 1000.0

    async def _wait_whole_answer(self, answer: ConverseAnswer) -> None:
        """A non-stream answer arrives when the whole generation would have finished."""
        delay = self._latency_s(answer)
        if self._rate(answer) > 0:
            delay += answer.usage.output_tokens / self._rate(answer)
        if delay > 0:
            await asyncio.sleep(delay)

    async def _converse(self, request: _Request, receive: Receive, send: Send) -> None:
        try:
            answer = self._plan(request)
        except SimulatedError as error:
            await _send_error(send, error, request.request_id)
            return
        await self._wait_whole_answer(answer)
        body = orjson.dumps(
            {
                "output": {
                    "message": {"role": "assistant", "content": [block.converse() for block in answer.blocks]}
                },
                "stopReason": answer.stop_reason,
                "usage": answer.usage.as_dict(),
                "metrics": {"latencyMs": request.elapsed_ms()},
            }
        )
        await _send_json(send, body, request.request_id)

    async def _invoke(self, request: _Request, receive: Receive, send: Send) -> None:
        try:
            if is_embedding_model(request.model_id):
                response, input_tokens = embed(request.model_id, _parse_json(request.body))
                latency = self.config.latency_ms / 1000.0
                if latency > 0:
                    await asyncio.sleep(latency)
                await _send_json(
                    send, orjson.dumps(response), request.request_id, _token_headers(input_tokens, 0, request)
                )
                return
            answer = self._plan_anthropic(request)
        except SimulatedError as error:
            await _send_error(send, error, request.request_id)
            return
        await self._wait_whole_answer(answer)
        body = orjson.dumps(anthropic_messages.message(answer, request.model_id, _message_id(request)))
        usage = answer.usage
        await _send_json(
            send, body, request.request_id, _token_headers(usage.input_tokens, usage.output_tokens, request)
        )

    async def _count_tokens(self, request: _Request, receive: Receive, send: Send) -> None:
        try:
            if request.model_id.split(".", 1)[0] in _PROFILE_PREFIXES:
                raise SimulatedError(
                    "ValidationException", "The provided model doesn't support counting tokens."
                )
            payload = _parse_json(request.body)
            source = payload.get("input") if isinstance(payload, dict) else None
            if isinstance(source, dict) and isinstance(source.get("invokeModel"), dict):
                raw = base64.b64decode(str(source["invokeModel"].get("body", "")))
                converse_request = anthropic_messages.to_converse(_parse_json(raw))
            elif isinstance(source, dict) and isinstance(source.get("converse"), dict):
                converse_request = source["converse"]
            else:
                raise SimulatedError("ValidationException", "input must hold invokeModel or converse.")
            answer = converse(converse_request, default_output_tokens=1)
        except SimulatedError as error:
            await _send_error(send, error, request.request_id)
            return
        except (ValueError, TypeError):
            await _send_error(
                send,
                SimulatedError("ValidationException", "invokeModel.body is not base64."),
                request.request_id,
            )
            return
        tools = converse_request.get("toolConfig", {}).get("tools", [])
        tokens = count_input_tokens(converse_request.get("system") or [], converse_request["messages"], tools)
        del answer  # planned only to validate the request the way a model call would
        await _send_json(send, orjson.dumps({"inputTokens": tokens}), request.request_id)

    async def _converse_stream(self, request: _Request, receive: Receive, send: Send) -> None:
        try:
            answer = self._plan(request)
        except SimulatedError as error:
            await _send_error(send, error, request.request_id)
            return
        await self._stream(answer, request, receive, send, _converse_frames(answer, request))

    async def _invoke_stream(self, request: _Request, receive: Receive, send: Send) -> None:
        try:
            answer = self._plan_anthropic(request)
        except SimulatedError as error:
            await _send_error(send, error, request.request_id)
            return
        await self._stream(answer, request, receive, send, _invoke_frames(answer, request))

    async def _stream(
        self,
        answer: ConverseAnswer,
        request: _Request,
        receive: Receive,
        send: Send,
        frames: Iterator[tuple[bool, bytes]],
    ) -> None:
        latency = self._latency_s(answer)
        rate = self._rate(answer)
        paced = latency > 0 or rate > 0
        # Only a paced stream can outlive its client for long; watching for the disconnect costs
        # a task, so an unpaced stream (sent in one burst) goes without.
        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, gone)) if paced else None
        try:
            if latency > 0:
                await asyncio.sleep(latency)
                if gone.is_set():
                    return
            # Headers go out with the first event, as Bedrock's do once the model starts.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [_EVENT_STREAM, (b"x-amzn-requestid", request.request_id)],
                }
            )
            await self._send_frames(answer, frames, send, gone)
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _send_frames(
        self, answer: ConverseAnswer, frames: Iterator[tuple[bool, bytes]], send: Send, gone: asyncio.Event
    ) -> None:
        """Send the frames, pacing the generated ones (deltas); fail after K deltas if told to."""
        directives = answer.directives
        if directives.stream_error is not None:
            frames = _cut_before_failure(list(frames), directives.after)
        elif directives.corrupt_after is not None:
            frames = _corrupted_after(list(frames), directives.corrupt_after)
        elif directives.disconnect_after is not None:
            frames = _cut_before_failure(list(frames), directives.disconnect_after)
        rate = self._rate(answer)
        loop = asyncio.get_running_loop()
        first_delta_at = loop.time()
        deltas = 0
        previous: bytes | None = None
        for is_delta, frame in frames:
            if is_delta:
                if rate > 0 and deltas:
                    # Pace against the start time rather than sleeping a fixed gap per token, so
                    # scheduling delays do not add up over a long answer.
                    delay = first_delta_at + deltas / rate - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if gone.is_set():
                        return
                deltas += 1
            if previous is not None:
                await _send_part(send, previous)
            previous = frame
        if directives.stream_error is not None:
            if previous is not None:
                await _send_part(send, previous)
            payload = orjson.dumps({"message": DEFAULT_MESSAGES.get(directives.stream_error, "")})
            previous = encode_exception_message(directives.stream_error, payload)
        elif directives.disconnect_after is not None:
            if previous is not None:
                await _send_part(send, previous)
            raise DroppedConnection  # the server closes the connection: the body never ends
        # The last frame ends the body.
        await send({"type": "http.response.body", "body": previous or b"", "more_body": False})


class DroppedConnection(Exception):
    """Raised to make the HTTP server close a streaming answer's connection mid-body."""


def _cut_before_failure(frames: list[tuple[bool, bytes]], after: int) -> Iterator[tuple[bool, bytes]]:
    """The frames a stream failing after `after` deltas sends: up to that delta, nothing after."""
    delta_positions = [i for i, (is_delta, _) in enumerate(frames) if is_delta]
    if after < len(delta_positions):
        end = delta_positions[after]
    else:
        end = delta_positions[-1] + 1 if delta_positions else 1
    return iter(frames[:end])


def _corrupted_after(frames: list[tuple[bool, bytes]], after: int) -> Iterator[tuple[bool, bytes]]:
    """The frames up to `after` deltas, then the next one with its message checksum broken."""
    kept = list(_cut_before_failure(frames, after))
    if len(kept) < len(frames):
        broken = frames[len(kept)][1]
        kept.append((False, broken[:-1] + bytes([broken[-1] ^ 0xFF])))
    return iter(kept)


def _message_id(request: _Request) -> str:
    return "msg_bdrk_" + request.request_id.decode().replace("-", "")[:24]


def _token_headers(input_tokens: int, output_tokens: int, request: _Request) -> list[tuple[bytes, bytes]]:
    return [
        (b"x-amzn-bedrock-input-token-count", str(input_tokens).encode()),
        (b"x-amzn-bedrock-output-token-count", str(output_tokens).encode()),
        (b"x-amzn-bedrock-invocation-latency", str(request.elapsed_ms()).encode()),
    ]


async def _send_json(
    send: Send, body: bytes, request_id: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                _JSON,
                (b"content-length", str(len(body)).encode()),
                (b"x-amzn-requestid", request_id),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _converse_frames(answer: ConverseAnswer, request: _Request) -> Iterator[tuple[bool, bytes]]:
    """ConverseStream's event messages, each flagged True if it is a generated delta."""
    yield False, _MESSAGE_START
    for index, block in enumerate(answer.blocks):
        if block.kind == "tool":
            start = {"toolUse": {"toolUseId": block.tool_use_id, "name": block.name}}
            yield False, _event("contentBlockStart", {"contentBlockIndex": index, "start": start})
        for chunk in block.chunks:
            if block.kind == "text":
                delta: dict[str, Any] = {"text": chunk}
            elif block.kind == "reasoning":
                delta = {"reasoningContent": {"text": chunk}}
            else:
                delta = {"toolUse": {"input": chunk}}
            yield True, _event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})
        if block.kind == "reasoning":
            delta = {"reasoningContent": {"signature": block.signature}}
            yield False, _event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})
        elif block.kind == "redacted":
            delta = {"reasoningContent": {"redactedContent": block.data}}
            yield True, _event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})
        yield False, _BLOCK_STOP if index == 0 else _event("contentBlockStop", {"contentBlockIndex": index})
    yield False, _event("messageStop", {"stopReason": answer.stop_reason})
    if not answer.directives.no_usage:
        metadata = {"usage": answer.usage.as_dict(), "metrics": {"latencyMs": request.elapsed_ms()}}
        yield False, _event("metadata", metadata)


def _invoke_frames(answer: ConverseAnswer, request: _Request) -> Iterator[tuple[bool, bytes]]:
    """InvokeModelWithResponseStream's `chunk` messages (base64 Anthropic events)."""
    for is_delta, event in anthropic_messages.events(answer, request.model_id, _message_id(request)):
        yield is_delta, _chunk(event)
    stop: dict[str, Any] = {"type": "message_stop"}
    if not answer.directives.no_usage:
        latency = request.elapsed_ms()
        stop["amazon-bedrock-invocationMetrics"] = {
            "inputTokenCount": answer.usage.input_tokens,
            "outputTokenCount": answer.usage.output_tokens,
            "invocationLatency": latency,
            "firstByteLatency": latency,
            "cacheReadInputTokenCount": answer.usage.cache_read_tokens,
            "cacheWriteInputTokenCount": answer.usage.cache_write_tokens,
        }
    yield False, _chunk(stop)


def _event(event_type: str, payload: dict[str, Any]) -> bytes:
    return encode_event_message(event_type, orjson.dumps(payload))


def _chunk(event: dict[str, Any]) -> bytes:
    return encode_event_message(
        "chunk", orjson.dumps({"bytes": base64.b64encode(orjson.dumps(event)).decode()})
    )


async def _send_part(send: Send, data: bytes) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": True})


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


async def _lifespan(receive: Receive, send: Send) -> None:
    # Nothing to set up or tear down; answering lets servers run with lifespan "on" or "auto".
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(config: SimulatorConfig | None = None) -> BedrockSimulator:
    """The simulator's ASGI application for ``config`` (defaults: no latency, any signature)."""
    return BedrockSimulator(config if config is not None else SimulatorConfig())
