"""Encoder for AWS event-stream messages (``application/vnd.amazon.eventstream``).

Wire format of one message, all integers big-endian::

    total length (4) | headers length (4) | prelude CRC32 (4) | headers | payload | message CRC32 (4)

Each header is ``name length (1) | name | value type (1) | value``; only type 7 (string: 2-byte
length then UTF-8 bytes) is needed here. The prelude CRC covers the first 8 bytes; the message
CRC covers everything before it. CRC32 is ``zlib.crc32``, which is what botocore checks against.

Pure functions, no I/O, so the server can call them on the hot path and tests can round-trip
them through ``botocore.eventstream.EventStreamBuffer``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from functools import lru_cache

__all__ = [
    "encode_event_message",
    "encode_exception_message",
    "encode_headers",
    "encode_message",
]

_STRING_TYPE = b"\x07"
# Prelude (8) + prelude CRC (4) + message CRC (4).
_FRAMING_BYTES = 16
_MAX_HEADER_NAME = 255
_MAX_HEADER_VALUE = 0xFFFF


def _encode_string_header(name: str, value: str) -> bytes:
    raw_name = name.encode("utf-8")
    raw_value = value.encode("utf-8")
    if len(raw_name) > _MAX_HEADER_NAME:
        raise ValueError(f"event-stream header name too long: {name!r}")
    if len(raw_value) > _MAX_HEADER_VALUE:
        raise ValueError(f"event-stream header value too long for {name!r}")
    return bytes((len(raw_name),)) + raw_name + _STRING_TYPE + len(raw_value).to_bytes(2, "big") + raw_value


def encode_headers(headers: Iterable[tuple[str, str]]) -> bytes:
    """Encode string headers in the given order (Bedrock's order is kept by callers)."""
    return b"".join(_encode_string_header(name, value) for name, value in headers)


def encode_message(encoded_headers: bytes, payload: bytes) -> bytes:
    """Frame already-encoded headers and a payload into one event-stream message."""
    headers_length = len(encoded_headers)
    total_length = _FRAMING_BYTES + headers_length + len(payload)
    prelude = total_length.to_bytes(4, "big") + headers_length.to_bytes(4, "big")
    prelude_crc = zlib.crc32(prelude)
    body = encoded_headers + payload
    head = prelude + prelude_crc.to_bytes(4, "big")
    # The message CRC covers prelude + prelude CRC + headers + payload; chaining the running CRC
    # avoids building the whole message once just to checksum it.
    message_crc = zlib.crc32(body, zlib.crc32(head))
    return head + body + message_crc.to_bytes(4, "big")


# Header blocks are a handful of fixed combinations per event type, so they are cached: the
# streaming path encodes one message per output token and should not rebuild them each time.
@lru_cache(maxsize=256)
def _event_headers(event_type: str, content_type: str) -> bytes:
    return encode_headers(
        ((":event-type", event_type), (":content-type", content_type), (":message-type", "event"))
    )


@lru_cache(maxsize=256)
def _exception_headers(exception_type: str, content_type: str) -> bytes:
    return encode_headers(
        (
            (":exception-type", exception_type),
            (":content-type", content_type),
            (":message-type", "exception"),
        )
    )


def encode_event_message(event_type: str, payload: bytes, content_type: str = "application/json") -> bytes:
    """An ``event`` message, e.g. ``encode_event_message("messageStart", b'{"role":"assistant"}')``."""
    return encode_message(_event_headers(event_type, content_type), payload)


def encode_exception_message(
    exception_type: str, payload: bytes, content_type: str = "application/json"
) -> bytes:
    """An ``exception`` message, e.g. ``encode_exception_message("throttlingException", b'{"message":"…"}')``.

    botocore raises ``EventStreamError`` with ``exception_type`` as the error code when it reads
    one, provided the name is a member of the operation's stream union (lower camel case for
    Bedrock: ``throttlingException``, ``modelStreamErrorException``, …).
    """
    return encode_message(_exception_headers(exception_type, content_type), payload)
