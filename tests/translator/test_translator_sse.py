"""SSE answers with keep-alives (translator/sse.py), driven with a recording ASGI `send`."""

from __future__ import annotations

import asyncio
from typing import Any

from translator.asgi import SSE_HEADERS
from translator.sse import ANTHROPIC_KEEPALIVE, OPENAI_KEEPALIVE, SseResponse


class Recorder:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.messages if m["type"] == "http.response.body"]


async def test_keepalives_start_the_answer_while_upstream_is_silent() -> None:
    send = Recorder()
    sse = SseResponse(send, OPENAI_KEEPALIVE, 0.05)

    async def slow() -> str:
        await asyncio.sleep(0.18)
        return "answer"

    assert await sse.wait(slow()) == "answer"
    assert sse.started
    assert send.messages[0] == {"type": "http.response.start", "status": 200, "headers": SSE_HEADERS}
    assert 2 <= len(send.bodies) <= 4 and set(send.bodies) == {OPENAI_KEEPALIVE}
    await sse.write(b"data: 1\n\n")
    await sse.end(b"data: [DONE]\n\n")
    assert send.bodies[-2:] == [b"data: 1\n\n", b"data: [DONE]\n\n"]
    assert send.messages[-1]["more_body"] is False
    count = len(send.messages)
    await asyncio.sleep(0.12)
    assert len(send.messages) == count  # nothing after the end


async def test_a_fast_upstream_sends_no_keepalive_and_no_headers_yet() -> None:
    send = Recorder()
    sse = SseResponse(send, ANTHROPIC_KEEPALIVE, 0.2)

    async def fast() -> int:
        return 1

    assert await sse.wait(fast()) == 1
    sse.stop_keepalive()
    assert not sse.started and send.messages == []  # an error can still be a plain HTTP error


async def test_silent_gaps_mid_stream_get_keepalives_and_writes_reset_the_timer() -> None:
    send = Recorder()
    sse = SseResponse(send, ANTHROPIC_KEEPALIVE, 0.05)
    sse.start_keepalive()
    for _ in range(4):
        await sse.write(b"event: x\n\n")
        await asyncio.sleep(0.02)
    assert ANTHROPIC_KEEPALIVE not in send.bodies
    await asyncio.sleep(0.08)
    assert ANTHROPIC_KEEPALIVE in send.bodies
    await sse.end()
    await sse.end()  # ending twice sends nothing more
    assert [m.get("more_body") for m in send.messages].count(False) == 1


async def test_zero_interval_turns_keepalives_off() -> None:
    send = Recorder()
    sse = SseResponse(send, OPENAI_KEEPALIVE, 0)

    async def slow() -> None:
        await asyncio.sleep(0.05)

    await sse.wait(slow())
    assert send.messages == []
