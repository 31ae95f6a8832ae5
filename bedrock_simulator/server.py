"""The simulator as a raw ASGI application speaking Bedrock Runtime's REST-JSON wire protocol.

No framework: routing is one split of the raw path, so a non-stream request costs little more
than the HTTP server's own parsing. Planning the answer is ``responses``' job, framing streamed
events is ``eventstream``'s, checking signatures is ``sigv4``'s; this module only reads the
request, applies them and writes bytes.

Routes::

    GET  /health                               200 "ok", no authentication (for supervisors)
    POST /model/{modelId}/converse             Converse
    POST /model/{modelId}/converse-stream      ConverseStream (application/vnd.amazon.eventstream)

Anything else is 404 ``UnknownOperationException``, as AWS answers.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

import orjson

from .config import SimulatorConfig
from .errors import DEFAULT_MESSAGES, SimulatedError, error_type_header
from .eventstream import encode_event_message, encode_exception_message
from .responses import ConverseAnswer, converse
from .sigv4 import SigV4Verifier

__all__ = ["ASGIApp", "BedrockSimulator", "create_app"]

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
    b"invoke": "InvokeModel",
    b"invoke-with-response-stream": "InvokeModelWithResponseStream",
    b"count-tokens": "CountTokens",
    b"apply-guardrail": "ApplyGuardrail",
}

_JSON = (b"content-type", b"application/json")
_EVENT_STREAM = (b"content-type", b"application/vnd.amazon.eventstream")
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
        return int((time.perf_counter() - self.started) * 1000)


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
        # One entry per operation: adding InvokeModel & co. means adding a handler here.
        self.operations: dict[bytes, Handler] = {
            b"converse": BedrockSimulator._converse,
            b"converse-stream": BedrockSimulator._converse_stream,
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
        return converse(_parse_json(request.body), default_output_tokens=self.config.output_tokens)

    def _rate(self, answer: ConverseAnswer) -> float:
        rate = answer.directives.tokens_per_second
        return self.config.tokens_per_second if rate is None else rate

    def _latency_s(self, answer: ConverseAnswer) -> float:
        latency_ms = answer.directives.latency_ms
        return (self.config.latency_ms if latency_ms is None else latency_ms) / 1000.0

    async def _converse(self, request: _Request, receive: Receive, send: Send) -> None:
        try:
            answer = self._plan(request)
        except SimulatedError as error:
            await _send_error(send, error, request.request_id)
            return
        # A non-stream answer arrives when the whole generation would have finished.
        delay = self._latency_s(answer)
        if self._rate(answer) > 0:
            delay += answer.usage.output_tokens / self._rate(answer)
        if delay > 0:
            await asyncio.sleep(delay)
        body = orjson.dumps(
            {
                "output": {"message": {"role": "assistant", "content": [{"text": answer.text}]}},
                "stopReason": answer.stop_reason,
                "usage": answer.usage.as_dict(),
                "metrics": {"latencyMs": request.elapsed_ms()},
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    _JSON,
                    (b"content-length", str(len(body)).encode()),
                    (b"x-amzn-requestid", request.request_id),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _converse_stream(self, request: _Request, receive: Receive, send: Send) -> None:
        try:
            answer = self._plan(request)
        except SimulatedError as error:
            await _send_error(send, error, request.request_id)
            return
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
            await _send_part(send, _MESSAGE_START)
            await self._stream_answer(answer, request, send, gone)
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _stream_answer(
        self, answer: ConverseAnswer, request: _Request, send: Send, gone: asyncio.Event
    ) -> None:
        directives = answer.directives
        fail_after = len(answer.chunks)
        if directives.stream_error is not None:
            fail_after = min(directives.after, fail_after)
        rate = self._rate(answer)
        loop = asyncio.get_running_loop()
        first_delta_at = loop.time()
        for index in range(fail_after):
            if rate > 0 and index:
                # Pace against the start time rather than sleeping a fixed gap per token, so
                # scheduling delays do not add up over a long answer.
                delay = first_delta_at + index / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if gone.is_set():
                    return
            payload = orjson.dumps({"contentBlockIndex": 0, "delta": {"text": answer.chunks[index]}})
            await _send_part(send, encode_event_message("contentBlockDelta", payload))

        if directives.stream_error is not None:
            payload = orjson.dumps({"message": DEFAULT_MESSAGES.get(directives.stream_error, "")})
            await send(
                {
                    "type": "http.response.body",
                    "body": encode_exception_message(directives.stream_error, payload),
                    "more_body": False,
                }
            )
            return

        await _send_part(send, _BLOCK_STOP)
        stop = orjson.dumps({"stopReason": answer.stop_reason})
        if directives.no_usage:
            await send(
                {
                    "type": "http.response.body",
                    "body": encode_event_message("messageStop", stop),
                    "more_body": False,
                }
            )
            return
        await _send_part(send, encode_event_message("messageStop", stop))
        metadata = orjson.dumps(
            {"usage": answer.usage.as_dict(), "metrics": {"latencyMs": request.elapsed_ms()}}
        )
        await send(
            {
                "type": "http.response.body",
                "body": encode_event_message("metadata", metadata),
                "more_body": False,
            }
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
