"""Decoding AWS event-stream framing: the body of ConverseStream and InvokeModelWithResponseStream.

Pure: bytes in, messages out, no I/O. botocore's `EventStreamBuffer` does the same and is the
reference in the tests; this decoder leaves the byte work to C (`struct`, `zlib.crc32` on
memoryviews) and builds one small object per message, which makes it several times cheaper
per message: a stream of many small token events is decoded on the translator's hot path.

Wire format of one message (all integers big-endian):

    total length (u32) | headers length (u32) | prelude CRC32 (u32, of the 8 bytes before it)
    headers: name length (u8), name (UTF-8), value type (u8), value
    payload
    message CRC32 (u32, of everything before it)
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = ["EventStreamDecoder", "HeaderValue", "InvalidEventStream", "Message"]

HeaderValue = bool | int | bytes | str

_PRELUDE = struct.Struct(">III")
_CRC = struct.Struct(">I")
_PRELUDE_LENGTH = 12
_MIN_MESSAGE = _PRELUDE_LENGTH + 4
# botocore's limits: a frame beyond them is refused, not buffered without end.
MAX_HEADERS_LENGTH = 128 * 1024
MAX_PAYLOAD_LENGTH = 24 * 1024 * 1024

_FIXED: dict[int, struct.Struct] = {
    2: struct.Struct(">b"),  # byte
    3: struct.Struct(">h"),  # short
    4: struct.Struct(">i"),  # integer
    5: struct.Struct(">q"),  # long
    8: struct.Struct(">q"),  # timestamp (milliseconds since the epoch, as botocore gives it)
}
_LENGTH16 = struct.Struct(">H")
# A stream repeats a handful of header blocks (one per event type), byte for byte: each is
# decoded once. Messages share the decoded dict, so its readers must not change it.
_HEADERS_SEEN: dict[bytes, dict[str, HeaderValue]] = {}
_HEADERS_SEEN_MAX = 256


class InvalidEventStream(ValueError):
    """The bytes are not a valid event stream (a bad checksum, length or header).

    `messages` holds the valid messages decoded from the same piece before the bad one:
    they arrived intact and are still the caller's to use.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.messages: list[Message] = []


@dataclass(frozen=True, slots=True)
class Message:
    headers: dict[str, HeaderValue]
    """Shared between messages with the same headers: read it, never change it."""
    payload: bytes


class EventStreamDecoder:
    """Feed it the body as it arrives; it returns the messages completed by each piece."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        """The messages `data` completes; raises InvalidEventStream (carrying them) on bad bytes."""
        messages: list[Message] = []
        try:
            self._decode(data, messages)
        except InvalidEventStream as error:
            error.messages = messages
            raise
        return messages

    def _decode(self, data: bytes, messages: list[Message]) -> None:
        buffer = self._buffer
        buffer += data
        offset = 0
        with memoryview(buffer) as view:
            while len(buffer) - offset >= _PRELUDE_LENGTH:
                total, headers_length, prelude_crc = _PRELUDE.unpack_from(buffer, offset)
                if zlib.crc32(view[offset : offset + 8]) != prelude_crc:
                    raise InvalidEventStream("prelude checksum mismatch")
                if headers_length > MAX_HEADERS_LENGTH:
                    raise InvalidEventStream(f"headers of {headers_length} bytes exceed the limit")
                payload_length = total - headers_length - _MIN_MESSAGE
                if payload_length < 0 or payload_length > MAX_PAYLOAD_LENGTH:
                    raise InvalidEventStream(f"invalid message length {total}")
                end = offset + total
                if len(buffer) < end:
                    break  # the rest of this message is still on its way
                (message_crc,) = _CRC.unpack_from(buffer, end - 4)
                if zlib.crc32(view[offset : end - 4]) != message_crc:
                    raise InvalidEventStream("message checksum mismatch")
                headers_start = offset + _PRELUDE_LENGTH
                payload_start = headers_start + headers_length
                block = bytes(view[headers_start:payload_start])
                headers = _HEADERS_SEEN.get(block)
                if headers is None:
                    headers = _decode_headers(block)
                    if len(_HEADERS_SEEN) >= _HEADERS_SEEN_MAX:
                        _HEADERS_SEEN.clear()
                    _HEADERS_SEEN[block] = headers
                messages.append(Message(headers, bytes(view[payload_start : end - 4])))
                offset = end
        del buffer[:offset]


def _decode_headers(block: bytes) -> dict[str, HeaderValue]:
    """A message's headers, from exactly its header bytes (nothing can be read past them)."""
    headers: dict[str, HeaderValue] = {}
    position = 0
    try:
        while position < len(block):
            name_length = block[position]
            position += 1
            name = block[position : position + name_length].decode()
            position += name_length
            kind = block[position]
            position += 1
            value: HeaderValue
            if kind == 7 or kind == 6:  # string, bytes: u16 length, then the bytes
                (length,) = _LENGTH16.unpack_from(block, position)
                position += 2
                raw = block[position : position + length]
                position += length
                value = raw.decode() if kind == 7 else raw
            elif kind in _FIXED:
                fixed = _FIXED[kind]
                (value,) = fixed.unpack_from(block, position)
                position += fixed.size
            elif kind == 0 or kind == 1:
                value = kind == 0  # 0 is true, 1 is false
            elif kind == 9:  # uuid: its 16 bytes, as botocore gives it
                value = block[position : position + 16]
                position += 16
            else:
                raise InvalidEventStream(f"unknown header value type {kind}")
            if position > len(block):
                raise InvalidEventStream(f"malformed headers (header {name!r} is cut short)")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError) as error:
        raise InvalidEventStream(f"malformed headers ({type(error).__name__})") from None
    return headers
