"""A server-sent-events answer that keeps idle connections alive.

A model that thinks for a minute before its first token leaves the connection silent, and
load balancers in front of BRProxy (often a 60 s idle timeout) cut it. `SseResponse` sends a
keep-alive frame whenever nothing was written for `interval` seconds: an SSE comment for
OpenAI clients (`: keep-alive`), a `ping` event for Anthropic's. While Bedrock has not
answered at all, the first keep-alive also sends the 200 and the SSE headers; until then an
upstream error can still be a proper HTTP error, afterwards it must be an error event.

The timer is one task per stream, so a token stream costs nothing extra per token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from core.usage import UsageEvent
from translator.asgi import SSE_HEADERS, Receive, Send
from translator.bedrock_client import BedrockStream

__all__ = ["ANTHROPIC_KEEPALIVE", "OPENAI_KEEPALIVE", "SseResponse", "close_on_disconnect", "relaying"]

OPENAI_KEEPALIVE = b": keep-alive\n\n"
ANTHROPIC_KEEPALIVE = b'event: ping\ndata: {"type": "ping"}\n\n'

_T = TypeVar("_T")


class SseResponse:
    """The writing side of one SSE answer (headers once, frames, keep-alives, the end)."""

    def __init__(self, send: Send, keepalive: bytes, interval: float) -> None:
        self._send = send
        self._keepalive = keepalive
        self._interval = interval
        self.started = False
        """True once the 200 and the SSE headers went out."""
        self.ended = False
        self._last_write = 0.0
        self._timer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not self.started:
            self.started = True
            await self._send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})

    async def write(self, frame: bytes) -> None:
        await self.start()
        self._last_write = asyncio.get_running_loop().time()
        await self._send({"type": "http.response.body", "body": frame, "more_body": True})

    async def end(self, frame: bytes = b"") -> None:
        """The last frame; the answer is complete after it."""
        self.stop_keepalive()
        if self.ended:
            return
        await self.start()
        self.ended = True
        await self._send({"type": "http.response.body", "body": frame, "more_body": False})

    def start_keepalive(self) -> None:
        """Keep-alive frames from now on, after every `interval` seconds without a write."""
        if self._interval > 0 and self._timer is None:
            self._last_write = asyncio.get_running_loop().time()
            self._timer = asyncio.create_task(self._tick(), name="sse-keepalive")

    def stop_keepalive(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.ended:
            idle = loop.time() - self._last_write
            if idle >= self._interval:
                with contextlib.suppress(OSError):
                    await self.write(self._keepalive)
                continue
            await asyncio.sleep(self._interval - idle)

    async def wait(self, awaitable: Awaitable[_T]) -> _T:
        """Await `awaitable` (Bedrock's answer) with keep-alives running meanwhile."""
        self.start_keepalive()
        return await awaitable


async def close_on_disconnect(receive: Receive, upstream: BedrockStream, event: UsageEvent) -> None:
    """Stop reading Bedrock once the client has gone (uvicorn drops writes to it silently)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    # uvicorn also reports "disconnect" once the response is complete; only a
    # disconnect while Bedrock is still answering means the client left.
    if not upstream.finished:
        event.status = "client_closed"
        await upstream.close()


@contextlib.asynccontextmanager
async def relaying(
    sse: SseResponse, upstream: BedrockStream, receive: Receive, event: UsageEvent
) -> AsyncIterator[None]:
    """While a Bedrock stream is relayed: watch for the client leaving; close everything after.

    uvicorn drops writes to a closed connection silently, so the watcher stops reading
    Bedrock once the client has gone (what it produced so far is still billed).
    """
    watcher = asyncio.create_task(close_on_disconnect(receive, upstream, event))
    try:
        yield
    except (OSError, asyncio.CancelledError):
        event.status = "client_closed"
        raise
    finally:
        sse.stop_keepalive()
        watcher.cancel()
        await upstream.close()
