"""A closed-loop async load generator: C workers, each sending its next request when the last ends.

Bounded in count and time, loopback only. It records per request the total latency and,
for streams, the time to the first content token. A request counts as successful only when
its answer holds the simulator's text (`Request.first_token_marker`); anything else is an error,
with up to three distinct samples kept for the report.

Each worker owns one keep-alive HTTP/1.1 connection: an asyncio protocol that writes the
request's bytes (built once) and parses the answer with httptools, on uvloop's TLS. Why not an
HTTP client library: the load generator shares the machine's two cores with the servers it
measures, and aiohttp's client cost about 0.1 ms of CPU per request more, time taken from
whichever side is being measured.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import httptools
import yarl

__all__ = ["LoadResult", "Request", "percentile", "run_load"]

REQUEST_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Request:
    url: yarl.URL
    body: bytes
    headers: dict[str, str]
    stream: bool
    first_token_marker: bytes
    """Bytes that appear in the response at the first content token (for TTFT and success)."""

    @cached_property
    def wire(self) -> bytes:
        """The whole request as sent: a POST with the body's length, keeping the connection."""
        url = self.url
        target = url.raw_path_qs  # as given: a signed path stays exactly as signed
        lines = [f"POST {target} HTTP/1.1", f"Host: {url.raw_authority}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def pooled(results: Sequence[LoadResult]) -> LoadResult:
    """Several runs of one load as one: counts and times summed, samples together.

    Percentiles of the pooled samples weigh each run by its requests, as one longer run
    would; interleaved with the other sides' runs, a burst of noise on the machine then
    lands on every side instead of on whichever ran during it.
    """
    merged = LoadResult()
    for result in results:
        merged.requests += result.requests
        merged.errors += result.errors
        merged.seconds += result.seconds
        merged.latencies_ms += result.latencies_ms
        merged.ttft_ms += result.ttft_ms
        for sample in result.error_samples:
            _keep_sample(merged, sample)
    return merged


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def _record_error(result: LoadResult, sample: str) -> None:
    result.errors += 1
    _keep_sample(result, sample)


def _keep_sample(result: LoadResult, sample: str) -> None:
    # Up to three different samples: three copies of the same failure say less than one.
    if len(result.error_samples) < 3 and sample not in result.error_samples:
        result.error_samples.append(sample)


class RequestFailed(Exception):
    """The exchange did not complete (connection lost, unparsable answer, timeout)."""


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time (httptools callbacks)."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.open = False
        self._answer: asyncio.Future[None] | None = None
        self._marker = b""
        self._stream = False
        self.status = 0
        self.keep_alive = True
        self.body: list[bytes] = []
        self.first: float | None = None
        self._tail = b""

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        self.open = True

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(RequestFailed(f"unparsable answer: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._fail(RequestFailed(f"connection lost: {exc or 'closed by the server'}"))

    # httptools
    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if self._stream and self.status == 200:
            if self.first is None:
                # The marker may straddle two chunks: look at the end of the last one too.
                if self._marker in self._tail + body:
                    self.first = time.perf_counter()
                else:
                    if not self.body:
                        self.body.append(body[:300])
                    self._tail = body[-len(self._marker) :]
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(None)

    # ours
    def _fail(self, error: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, request: Request) -> None:
        """Send `request` and wait for its whole answer (status, body, first-token time)."""
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._marker = request.first_token_marker
        self._stream = request.stream
        self.status, self.body, self.first, self._tail = 0, [], None, b""
        self.transport.write(request.wire)
        await self._answer


async def _connect(url: yarl.URL, context: ssl.SSLContext | None) -> _Connection:
    loop = asyncio.get_running_loop()
    host, port = url.raw_host or "127.0.0.1", url.port or (443 if context else 80)
    _, connection = await loop.create_connection(
        _Connection, host, port, ssl=context, server_hostname=host if context else None
    )
    return connection


class _Client:
    """One worker's connection, opened when first needed and again after the server closes it."""

    def __init__(self, context: ssl.SSLContext | None) -> None:
        self._context = context
        self._connection: _Connection | None = None

    async def send(self, request: Request, result: LoadResult) -> None:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            connection = self._connection
            if connection is None or not connection.open:
                connection = self._connection = await _connect(request.url, self._context)
            deadline = loop.call_later(REQUEST_TIMEOUT_S, connection.close)
            try:
                await connection.exchange(request)
            finally:
                deadline.cancel()
        except (OSError, RequestFailed) as error:  # ssl.SSLError is an OSError
            self._connection = None
            _record_error(result, f"{type(error).__name__}: {error}"[:300])
            return
        done = time.perf_counter()
        if not connection.keep_alive:
            connection.close()
        if connection.status != 200:
            _record_error(result, f"HTTP {connection.status}: {b''.join(connection.body)[:300]!r}")
            return
        # A 200 is a success only if it carries the simulator's answer: a proxy that streams an
        # error event (or an empty answer) with status 200 must not look fast.
        if request.stream:
            answered = connection.first is not None
        else:
            answered = request.first_token_marker in b"".join(connection.body)
        if not answered:
            head = b"".join(connection.body)[:300]
            _record_error(result, f"HTTP 200 without the simulator's answer: {head!r}")
            return
        result.requests += 1
        result.latencies_ms.append((done - started) * 1000)
        if connection.first is not None:
            result.ttft_ms.append((connection.first - started) * 1000)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


async def run_load(
    make_request: Callable[[int], Request],
    concurrency: int,
    *,
    max_requests: int,
    max_seconds: float,
    warmup: int = 50,
    ca_file: str | None = None,
    spread_s: float = 0.0,
) -> LoadResult:
    """Run until `max_requests` completed or `max_seconds` passed, after a warm-up.

    The warm-up is the same closed loop, uncounted: it lasts until `warmup` requests have
    completed and every client has completed one. Why every client: each opens its own
    connection (a TLS handshake, when there is TLS) on its first request, and the proxy
    behind it grows its own pools to match; counted, those first requests put connection
    set-up into the figures of the TLS side only, right in its p99. Only requests that
    start after the warm-up count, and the loop never pauses in between.

    `spread_s` staggers the clients' first requests evenly over that many seconds. Why: with
    a simulator whose latency is the same for every request, clients that start together
    stay in lock-step for the whole run, and every proxy then sees C requests arrive in the
    same instant, C times per cycle, which independent users never do. Staggered by one
    latency period they arrive spread out, as they do in production, where answers take
    different times.
    """
    context: ssl.SSLContext | None = None
    if ca_file:
        context = ssl.create_default_context(cafile=ca_file)
        context.check_hostname = False
    clients = [_Client(context) for _ in range(concurrency)]
    scratch = LoadResult()  # the warm-up's figures, dropped
    result = LoadResult()
    warm_done = 0
    warm_clients: set[int] = set()
    counter = 0
    measuring = False
    started = deadline = 0.0

    def start_measuring() -> None:
        nonlocal measuring, started, deadline
        measuring = True
        started = time.perf_counter()
        deadline = started + max_seconds

    async def worker(number: int) -> None:
        nonlocal counter, warm_done
        if spread_s:
            await asyncio.sleep(spread_s * number / concurrency)
        client = clients[number]
        while not measuring:
            await client.send(make_request(-1 - warm_done), scratch)
            warm_done += 1
            warm_clients.add(number)
            if not measuring and warm_done >= warmup and len(warm_clients) == concurrency:
                start_measuring()
        while counter < max_requests and time.perf_counter() < deadline:
            counter += 1
            await client.send(make_request(counter), result)

    try:
        if warmup <= 0:
            start_measuring()
        await asyncio.gather(*(worker(number) for number in range(concurrency)))
        result.seconds = time.perf_counter() - started
        return result
    finally:
        for client in clients:
            client.close()
