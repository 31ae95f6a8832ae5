"""The benchmark's load generator counts only real answers, and times the first token where it arrives.

Its figures are the benchmark's: a request it counted wrongly, or a first token it timed at
the wrong moment, would make every proxy's numbers wrong together. A scripted HTTP server
answers as each test needs.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import yarl

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from loadgen import Request, run_load

Answer = Callable[[int, asyncio.StreamWriter], Awaitable[None]]
MARKER = b'"content":"Simulated'


@asynccontextmanager
async def scripted(answer: Answer) -> AsyncIterator[tuple[str, list[int]]]:
    """A keep-alive HTTP/1.1 server; `answer(n, writer)` writes the n-th response (n from 0)."""
    count = [0]
    connections = [0]

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                number, count[0] = count[0], count[0] + 1
                await answer(number, writer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        server.close()


def request(url: str, *, stream: bool) -> Request:
    return Request(
        url=yarl.URL(url + "/v1/chat/completions"),
        body=b'{"model":"m"}',
        headers={"authorization": "Bearer k", "content-type": "application/json"},
        stream=stream,
        first_token_marker=MARKER,
    )


def sized(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def test_only_answers_that_carry_the_text_count_as_successes() -> None:
    async def answer(number: int, writer: asyncio.StreamWriter) -> None:
        if number % 4 == 1:
            writer.write(sized(b'{"error":"slow down"}', "429 Too Many Requests"))
        elif number % 4 == 2:
            writer.write(sized(b'{"choices":[]}'))  # a 200 without the answer is a failure too
        else:
            writer.write(sized(b'{"choices":[{"message":{"content":"Simulated answer"}}]}'))

    async with scripted(answer) as (url, connections):
        result = await run_load(
            lambda _i: request(url, stream=False), 4, max_requests=40, max_seconds=30, warmup=0
        )
    assert (result.requests, result.errors) == (20, 20)
    assert len(result.latencies_ms) == 20
    assert result.ttft_ms == []
    assert any(sample.startswith("HTTP 429") for sample in result.error_samples)
    assert any("without the simulator's answer" in sample for sample in result.error_samples)
    assert connections[0] == 4  # one keep-alive connection per client


async def test_the_first_token_is_timed_when_it_arrives_even_split_across_reads() -> None:
    async def answer(number: int, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        first = b'data: {"role":"assistant"}\n\ndata: {"content":"Simu'
        writer.write(f"{len(first):x}\r\n".encode() + first + b"\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # the token completes only in the next read
        rest = b'lated"}\n\ndata: [DONE]\n\n'
        writer.write(f"{len(rest):x}\r\n".encode() + rest + b"\r\n0\r\n\r\n")

    async with scripted(answer) as (url, _):
        result = await run_load(
            lambda _i: request(url, stream=True), 2, max_requests=6, max_seconds=30, warmup=0
        )
    assert (result.requests, result.errors) == (6, 0)
    assert len(result.ttft_ms) == 6
    assert all(ttft >= 45 for ttft in result.ttft_ms)  # not at the first bytes, 50 ms earlier
    assert all(total >= ttft for total, ttft in zip(result.latencies_ms, result.ttft_ms, strict=True))


async def test_a_server_that_closes_each_connection_is_reconnected_and_a_lost_answer_is_an_error() -> None:
    async def answer(number: int, writer: asyncio.StreamWriter) -> None:
        if number == 3:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        else:
            writer.write(sized(b'"content":"Simulated"', extra="Connection: close\r\n"))
        await writer.drain()
        writer.close()

    async with scripted(answer) as (url, connections):
        result = await run_load(
            lambda _i: request(url, stream=False), 1, max_requests=6, max_seconds=30, warmup=0
        )
    assert (result.requests, result.errors) == (5, 1)
    assert "RequestFailed: connection lost" in result.error_samples[0]
    assert connections[0] == 6


async def test_every_clients_first_request_is_warm_up_so_connection_set_up_is_never_counted() -> None:
    """The first request on each connection is slow here (as a TLS handshake is); none counts."""
    served_on: dict[int, int] = {}

    async def answer(number: int, writer: asyncio.StreamWriter) -> None:
        connection = id(writer)
        served_on[connection] = served_on.get(connection, 0) + 1
        if served_on[connection] == 1:
            await asyncio.sleep(0.3)
        writer.write(sized(b'{"choices":[{"message":{"content":"Simulated answer"}}]}'))

    async with scripted(answer) as (url, connections):
        result = await run_load(
            lambda _i: request(url, stream=False), 8, max_requests=80, max_seconds=30, warmup=3
        )
    assert (result.requests, result.errors) == (80, 0)
    assert connections[0] == 8  # every client opened its connection, during the warm-up
    assert max(result.latencies_ms) < 250, sorted(result.latencies_ms)[-5:]
    # Counted or not, every request was served: the warm-up is the same loop, uncounted.
    assert sum(served_on.values()) >= 80 + 8
