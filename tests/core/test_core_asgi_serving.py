"""Writes a service makes in one event-loop turn leave in one send (`core/asgi_serving.py`)."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from local_ports import free_port

from core.asgi_serving import CoalescingHttpToolsProtocol, _CoalescingTransport


class RecordingTransport(asyncio.Transport):
    """asyncio's transport interface, recording what reaches the socket."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5), "sockname": ("127.0.0.1", 6)}.get(name, default)


async def test_a_response_head_and_body_written_in_one_turn_leave_in_one_send() -> None:
    real = RecordingTransport()
    transport = _CoalescingTransport(real)
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"{}")
    assert real.sent == []  # nothing yet: the turn is not over
    await asyncio.sleep(0)
    assert real.sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    transport.write(b"next")  # a later turn is a later send
    await asyncio.sleep(0)
    assert real.sent[1:] == [b"next"]


async def test_closing_sends_what_was_written_first_and_nothing_goes_to_a_closed_socket() -> None:
    real = RecordingTransport()
    transport = _CoalescingTransport(real)
    transport.write(b"last words")
    transport.close()
    assert real.sent == [b"last words"]
    assert real.closed
    transport.write(b"too late")
    await asyncio.sleep(0)
    assert real.sent == [b"last words"]


async def test_everything_else_is_the_real_transports() -> None:
    real = RecordingTransport()
    transport = _CoalescingTransport(real)
    assert transport.get_extra_info("peername") == ("127.0.0.1", 5)
    assert transport.is_closing() is False


async def test_uvicorn_serves_on_it_a_whole_answer_and_a_stream_on_one_connection() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for part in (b"one ", b"two ", b"three"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
                await asyncio.sleep(0.01)  # separate turns: separate chunks
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"{}"})

    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=CoalescingHttpToolsProtocol,
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110  (uvicorn offers no event to wait on)
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /whole HTTP/1.1\r\nHost: x\r\n\r\nGET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        whole = await reader.readuntil(b"{}")
        stream = await reader.readuntil(b"0\r\n\r\n")
        writer.close()
    finally:
        server.should_exit = True
        await serving
    assert whole.startswith(b"HTTP/1.1 200 OK\r\n") and whole.endswith(b"\r\n\r\n{}")
    assert stream.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in stream
    assert stream.endswith(b"4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n")
