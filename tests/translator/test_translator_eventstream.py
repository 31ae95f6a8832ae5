"""The event-stream decoder against botocore's, on Bedrock-shaped streams and every header type."""

from __future__ import annotations

import struct
import zlib

import pytest
from botocore.eventstream import EventStreamBuffer

from bedrock_simulator.eventstream import encode_event_message, encode_exception_message
from translator.eventstream import EventStreamDecoder, InvalidEventStream, Message


def frame(headers: bytes, payload: bytes) -> bytes:
    """One message with raw, already encoded headers (the simulator only encodes strings)."""
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def header(name: str, kind: int, value: bytes) -> bytes:
    return bytes([len(name)]) + name.encode() + bytes([kind]) + value


EVERY_HEADER_TYPE = (
    header("true", 0, b"")
    + header("false", 1, b"")
    + header("byte", 2, struct.pack(">b", -7))
    + header("short", 3, struct.pack(">h", -300))
    + header("int", 4, struct.pack(">i", 70000))
    + header("long", 5, struct.pack(">q", -(2**40)))
    + header("bytes", 6, struct.pack(">H", 3) + b"\x00\x01\x02")
    + header("string", 7, struct.pack(">H", 5) + "héllo".encode()[:5])
    + header("timestamp", 8, struct.pack(">q", 1_700_000_000_000))
    + header("uuid", 9, bytes(range(16)))
)

CONVERSE_STREAM = b"".join(
    [encode_event_message("messageStart", b'{"role":"assistant"}')]
    + [
        encode_event_message("contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"text":"word "}}')
        for _ in range(5)
    ]
    + [
        encode_event_message("messageStop", b'{"stopReason":"end_turn"}'),
        encode_event_message("metadata", b'{"usage":{"inputTokens":3,"outputTokens":5}}'),
    ]
)

STREAMS = {
    "converse-stream": CONVERSE_STREAM,
    "exception": encode_exception_message("throttlingException", b'{"message":"slow down"}'),
    "every-header-type": frame(EVERY_HEADER_TYPE, b"payload"),
    "empty-payload-and-headers": frame(b"", b""),
}


def botocore_messages(stream: bytes) -> list[Message]:
    buffer = EventStreamBuffer()
    buffer.add_data(stream)
    return [Message(dict(m.headers), m.payload) for m in buffer]


@pytest.mark.parametrize("stream", STREAMS.values(), ids=STREAMS.keys())
def test_decodes_as_botocore_does(stream: bytes) -> None:
    assert EventStreamDecoder().feed(stream) == botocore_messages(stream)


@pytest.mark.parametrize("piece", [1, 7, 13, 100])
def test_messages_split_across_reads(piece: int) -> None:
    decoder = EventStreamDecoder()
    decoded: list[Message] = []
    for start in range(0, len(CONVERSE_STREAM), piece):
        decoded += decoder.feed(CONVERSE_STREAM[start : start + piece])
    assert decoded == botocore_messages(CONVERSE_STREAM)


def test_a_message_is_returned_by_the_read_that_completes_it() -> None:
    first = encode_event_message("messageStart", b'{"role":"assistant"}')
    decoder = EventStreamDecoder()
    assert decoder.feed(first[:-1]) == []
    (message,) = decoder.feed(first[-1:])
    assert message.headers[":event-type"] == "messageStart"


def corrupt(stream: bytes, index: int) -> bytes:
    return stream[:index] + bytes([stream[index] ^ 0xFF]) + stream[index + 1 :]


BAD = {
    "prelude-checksum": (corrupt(CONVERSE_STREAM, 9), "prelude checksum"),
    "message-checksum": (corrupt(CONVERSE_STREAM, 20), "message checksum"),
    "headers-too-long": (struct.pack(">II", 300_000, 200_000) + b"\0" * 8, "headers of 200000 bytes"),
    "unknown-header-type": (frame(header("x", 42, b""), b""), "unknown header value type 42"),
    "header-overruns": (frame(header("x", 7, struct.pack(">H", 50) + b"ab"), b""), "malformed headers"),
}


@pytest.mark.parametrize(("stream", "error"), BAD.values(), ids=BAD.keys())
def test_invalid_streams_are_refused(stream: bytes, error: str) -> None:
    if error.startswith("headers of"):  # a well-formed prelude with an impossible header size
        prelude = stream[:8]
        stream = prelude + struct.pack(">I", zlib.crc32(prelude)) + stream[12:]
    with pytest.raises(InvalidEventStream, match=error):
        EventStreamDecoder().feed(stream)


def test_the_intact_messages_before_a_bad_one_come_with_the_error() -> None:
    first = encode_event_message("messageStart", b'{"role":"assistant"}')
    second = encode_event_message("contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"text":"Hi"}}')
    with pytest.raises(InvalidEventStream, match="message checksum") as caught:
        EventStreamDecoder().feed(first + corrupt(second, len(second) - 1))
    assert caught.value.messages == botocore_messages(first)
