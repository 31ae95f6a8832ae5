"""The small ASGI toolkit the translator's endpoints share (no framework on the hot path)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from core.admission import MAX_BODY_BYTES
from core.errors import error_body
from core.internal_headers import KEY_ID, KEY_ROLE, ROLE_BOOTSTRAP

__all__ = [
    "JSON_HEADERS",
    "MAX_BODY_BYTES",
    "SSE_HEADERS",
    "Receive",
    "Reply",
    "Request",
    "Scope",
    "Send",
    "send_json",
]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    # Tells proxies in front of us (nginx and friends) not to buffer the stream either.
    (b"x-accel-buffering", b"no"),
]


class Reply(Exception):
    """Ends a request early with a JSON response (an error, in the client's shape)."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or []

    @classmethod
    def error(
        cls,
        path: str,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> Reply:
        return cls(status, error_body(path, status, message, code=code, param=param), headers)


async def send_json(
    send: Send, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS + (extra or [])})
    await send({"type": "http.response.body", "body": orjson.dumps(body)})


@dataclass(slots=True)
class Request:
    """One HTTP request as the endpoints see it."""

    scope: Scope
    receive: Receive
    send: Send
    headers: dict[bytes, bytes]
    key_id: int | None = None
    """Set by `caller()`."""
    usage_submitted: bool = False
    """Set once the endpoint handed this request's usage event to the meter."""
    output_ceiling: int | None = None
    """The output ceiling the Bedrock call was made with (set by `Gateway.check_admitted`):
    no estimate of its output exceeds it."""
    input_estimate: int = 0
    """Our estimate of the prompt's tokens (set by `Gateway.check_admitted`)."""
    journaled_parts: int = 0
    """How many of the stream's generated parts the in-flight journal has."""
    journaled_counts: tuple[int, ...] = ()
    """Bedrock's token counts as the in-flight journal last recorded them."""
    _request_id: str | None = None

    @property
    def request_id(self) -> str:
        """Envoy's `x-request-id` (a UUID fixed at the edge), else a new UUID.

        It is the usage event's id, so authz (which sees the same id) can free the request's
        reservation when the meter records it.
        """
        if self._request_id is None:
            raw = self.headers.get(b"x-request-id")
            try:
                self._request_id = str(uuid.UUID(raw.decode("ascii"))) if raw is not None else None
            except (ValueError, UnicodeDecodeError):
                self._request_id = None
            if self._request_id is None:
                self._request_id = str(uuid.uuid4())
        return self._request_id

    @property
    def path(self) -> str:
        path: str = self.scope["path"]
        return path

    def header(self, name: bytes | str) -> str | None:
        value = self.headers.get(name.encode() if isinstance(name, str) else name)
        return value.decode("latin-1") if value is not None else None

    def caller(self) -> int:
        """The caller's key id, as authz vouched for it through Envoy."""
        raw = self.headers.get(KEY_ID.encode())
        if raw is None or not raw.isdigit():
            raise Reply.error(self.path, 401, "Missing API key.", code="invalid_api_key")
        if self.headers.get(KEY_ROLE.encode(), b"").decode() == ROLE_BOOTSTRAP:
            raise Reply.error(self.path, 403, "The bootstrap admin key cannot call models.")
        self.key_id = int(raw)
        return self.key_id

    async def body(self) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise Reply.error(self.path, 400, "The client disconnected before sending the body.")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise Reply.error(self.path, 413, f"The request body is over {MAX_BODY_BYTES} bytes.")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
