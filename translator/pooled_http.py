"""The translator's HTTP/1.1 client: pooled keep-alive connections, TLS, an optional forward proxy.

It carries the calls to Bedrock Runtime and the usage batches to the meter. Why not an HTTP
client library: profiled at 1,300 requests per second, aiohttp's client took about a
quarter of the translator's CPU (request objects, header multidicts, payload registries,
stream readers) for what is, here, always the same exchange: one POST with a body of known
length to one endpoint, its answer read whole or relayed as it arrives. This module does
only that, on asyncio protocols with httptools' parser, so the translator's cost per call
is its own work plus the system calls.

What it keeps from a full client:
- keep-alive connections, reused most-recent first; an idle one is dropped after
  `IDLE_S`, well before servers close theirs, so a request is never written into a
  connection the server is closing (a POST is not retried: a model call is never made twice);
- TLS with the system's (or `ca_bundle`'s) certificates;
- a forward proxy: `CONNECT` for HTTPS endpoints, the absolute URL for HTTP ones,
  `Proxy-Authorization` from the proxy URL's user:password;
- a Unix socket instead of the URL's host and port (the meter on one machine: `brproxy up`);
- deadlines: `connect_timeout_s` to connect (proxy tunnel and TLS handshake included),
  `read_timeout_s` of silence while an answer is awaited or relayed;
- back-pressure: reading from the socket pauses while more than `HIGH_WATER` bytes of a
  relayed answer wait for a slow client.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType

import httptools

from translator.sigv4 import host_header

__all__ = ["HttpFailure", "HttpResponse", "PooledHttp"]

IDLE_S = 20.0
"""How long an idle connection is kept for reuse (servers keep theirs 60 s or more)."""
MAX_IDLE = 256
"""Idle connections kept at most; more are closed when released."""
HIGH_WATER = 1 << 20
"""Bytes of an answer buffered before reading from the socket pauses."""


class HttpFailure(Exception):
    """Connecting, sending or reading failed. The message names what, never a credential."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, carrying one exchange at a time (httptools' callbacks)."""

    def __init__(self, read_timeout_s: float) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._read_timeout_s = read_timeout_s
        self.transport: asyncio.Transport | None = None
        self.usable = False
        """Connected, not closed, and not in the middle of an answer that was abandoned."""
        self.idle_since = 0.0
        # The exchange in progress.
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep_alive = True
        self.head_done = False
        self.complete = False
        self.failure: HttpFailure | None = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        self.usable = True

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._lose(HttpFailure(f"unparsable HTTP answer ({type(error).__name__})"))
            self.close()
            return
        # One wake-up per socket read, however many body pieces the parser produced: the
        # reader then takes everything that arrived together as one batch.
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        if self.head_done and not self.complete and self._ends_at_close():
            self.complete = True  # a body without a length ends when the connection does
            self._wake()
        elif not self.complete:
            self._lose(HttpFailure("the connection was closed before the answer was complete"))

    def _ends_at_close(self) -> bool:
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        return "content-length" not in self.headers and not chunked

    # httptools
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self._buffer.append(body)
        self._buffered += len(body)

    def on_message_complete(self) -> None:
        self.complete = True

    # ours
    def start(self, request: bytes) -> None:
        """Send one request (head and body in one write) and reset the answer's state."""
        assert self.transport is not None
        self.status, self.headers, self.keep_alive = 0, {}, True
        self.head_done = self.complete = False
        self.failure = None
        self._buffer, self._buffered = [], 0
        self.transport.write(request)

    def take(self) -> bytes:
        """The body bytes received so far (and resume reading if it was paused)."""
        data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
        self._buffer, self._buffered = [], 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    @property
    def has_data(self) -> bool:
        return self._buffered > 0

    async def wait(self) -> None:
        """Until more of the answer arrives, it completes, or it fails (or `read_timeout_s` passes)."""
        if self.failure is not None:
            raise self.failure
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(self._read_timeout_s, self._time_out)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self.failure is not None:
            raise self.failure

    def _time_out(self) -> None:
        self._lose(HttpFailure(f"no data from the server for {self._read_timeout_s:g} s"))
        self.close()

    def _lose(self, failure: HttpFailure) -> None:
        self.usable = False
        if self.failure is None:
            self.failure = failure
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()


class HttpResponse:
    """An answer: status and headers (lower-case names) at once, the body read or relayed."""

    def __init__(self, connection: _Connection, pool: PooledHttp) -> None:
        self._connection = connection
        self._pool: PooledHttp | None = pool
        self.status = connection.status
        self.headers = connection.headers

    async def read(self) -> bytes:
        """The whole body; the connection then goes back to the pool."""
        connection = self._connection
        while not connection.complete:
            await connection.wait()
        body = connection.take()
        self.close()
        return body

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: each item is everything one read (or several) delivered."""
        connection = self._connection
        while True:
            if self._pool is None:  # closed on our side (the client left): nothing more to relay
                return
            if connection.has_data:
                yield connection.take()
            elif connection.complete:
                self.close()
                return
            else:
                try:
                    await connection.wait()
                except HttpFailure:
                    if self._pool is None:  # the close above woke this reader: not a failure
                        return
                    raise

    def close(self) -> None:
        """Done with the answer: a complete one frees the connection for reuse, else it is closed."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        connection = self._connection
        if connection.complete and connection.keep_alive and connection.usable and not connection.has_data:
            pool.release(connection)
        else:
            connection.close()

    async def __aenter__(self) -> HttpResponse:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _TunnelReply(asyncio.Protocol):
    """Reads a proxy's answer to CONNECT (a head, no body) before TLS starts in the tunnel."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.head += data
        if b"\r\n\r\n" in self.head and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(HttpFailure("the proxy closed the connection during CONNECT"))


class PooledHttp:
    """POSTs to one endpoint (`https://host[:port]` or `http://…`), optionally through a proxy.

    With `unix_socket`, every connection goes to that socket; the URL then gives only the
    Host header (plain HTTP, no proxy: it is a local service).
    """

    def __init__(
        self,
        endpoint_url: str,
        *,
        unix_socket: Path | None = None,
        proxy: str | None = None,
        ca_bundle: str | None = None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 900.0,
    ) -> None:
        endpoint = urllib.parse.urlsplit(endpoint_url)
        self._https = endpoint.scheme == "https"
        if unix_socket is not None and (self._https or proxy is not None):
            raise ValueError("a Unix socket is reached over plain HTTP, without a proxy")
        self._unix_socket = None if unix_socket is None else str(unix_socket)
        self._host = endpoint.hostname or ""
        self._port = endpoint.port or (443 if self._https else 80)
        self._host_header = host_header(endpoint.scheme, endpoint.netloc)  # as signed
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context(cafile=ca_bundle) if self._https else None
        )
        self._idle: list[_Connection] = []
        self._proxy: tuple[str, int] | None = None
        self._proxy_authorization = ""
        if proxy is not None:
            parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            if parts.scheme != "http":
                # As aiohttp: a proxy is reached over plain HTTP (HTTPS goes through CONNECT).
                raise ValueError(f"unsupported proxy scheme {parts.scheme!r}: use an http:// proxy")
            self._proxy = (parts.hostname or "", parts.port or 80)
            if parts.username is not None:
                user = urllib.parse.unquote(parts.username)
                password = urllib.parse.unquote(parts.password or "")
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                self._proxy_authorization = f"Proxy-Authorization: Basic {token}\r\n"
        # Through a proxy, a plain-HTTP request names the whole URL (and carries the proxy's
        # credentials); an HTTPS one goes inside a CONNECT tunnel, where the proxy sees nothing.
        self._absolute_prefix = ""
        if self._proxy is not None and not self._https:
            self._absolute_prefix = f"http://{self._host_header}"

    def request_bytes(self, path: str, headers: dict[str, str], body: bytes) -> bytes:
        """The request on the wire: `path` exactly as given (as it was signed)."""
        lines = [f"POST {self._absolute_prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in headers.items())
        if self._absolute_prefix:
            lines.append(self._proxy_authorization)
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        return "".join(lines).encode("latin-1") + body

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> HttpResponse:
        """Send a POST and wait for the answer's head. Raises HttpFailure if that fails."""
        connection = await self._acquire()
        connection.start(self.request_bytes(path, headers, body))
        try:
            while not connection.head_done:
                await connection.wait()
        except HttpFailure:
            connection.close()
            raise
        return HttpResponse(connection, self)

    async def _acquire(self) -> _Connection:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if connection.usable and now - connection.idle_since < IDLE_S:
                return connection
            connection.close()
        try:
            return await asyncio.wait_for(self._connect(), self._connect_timeout_s)
        except TimeoutError:
            raise HttpFailure(f"connecting took more than {self._connect_timeout_s:g} s") from None
        except (OSError, ssl.SSLError) as error:  # refused, unresolvable, TLS refused
            raise HttpFailure(f"cannot connect ({type(error).__name__})") from None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = _Connection(self._read_timeout_s)
        if self._unix_socket is not None:
            await loop.create_unix_connection(lambda: connection, self._unix_socket)
            return connection
        if self._proxy is None:
            await loop.create_connection(
                lambda: connection,
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._host if self._ssl else None,
            )
            return connection
        if self._ssl is None:  # plain HTTP through the proxy: absolute URLs on one connection
            await loop.create_connection(lambda: connection, *self._proxy)
            return connection
        transport, reply = await loop.create_connection(_TunnelReply, *self._proxy)
        target = f"{self._host}:{self._port}"
        transport.write(
            f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{self._proxy_authorization}\r\n".encode(
                "latin-1"
            )
        )
        try:
            await reply.done
            status_line = bytes(reply.head).split(b"\r\n", 1)[0].split()
            if len(status_line) < 2 or status_line[1] != b"200":
                code = status_line[1].decode("latin-1") if len(status_line) > 1 else "?"
                raise HttpFailure(f"the proxy refused the tunnel (HTTP {code})")
            tls = await loop.start_tls(transport, connection, self._ssl, server_hostname=self._host)
        except BaseException:
            transport.close()
            raise
        assert tls is not None
        connection.connection_made(tls)
        return connection

    def release(self, connection: _Connection) -> None:
        if len(self._idle) >= MAX_IDLE:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
