"""The simulator's event-stream encoder against botocore's decoder (the one boto3 uses)."""

from __future__ import annotations

import zlib

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer, EventStreamMessage

from bedrock_simulator import encode_event_message, encode_exception_message
from bedrock_simulator.eventstream import encode_headers, encode_message


def _decode_all(data: bytes, chunk: int | None = None) -> list[EventStreamMessage]:
    buffer = EventStreamBuffer()
    messages: list[EventStreamMessage] = []
    step = chunk or len(data) or 1
    for start in range(0, len(data), step):
        buffer.add_data(data[start : start + step])
        messages.extend(buffer)
    return messages


EVENT_CASES = [
    pytest.param("messageStart", {"role": "assistant"}, id="message-start"),
    pytest.param("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " word"}}, id="delta"),
    pytest.param("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": ""}}, id="empty-delta"),
    pytest.param(
        "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "héllo ✓ 漢字 🚀"}}, id="unicode"
    ),
    pytest.param("contentBlockStop", {"contentBlockIndex": 0}, id="block-stop"),
    pytest.param("messageStop", {"stopReason": "max_tokens"}, id="message-stop"),
    pytest.param(
        "metadata",
        {"usage": {"inputTokens": 7, "outputTokens": 16, "totalTokens": 23}, "metrics": {"latencyMs": 12}},
        id="metadata",
    ),
    pytest.param("contentBlockDelta", {"delta": {"text": "x" * 200_000}}, id="large-payload"),
]


@pytest.mark.parametrize(("event_type", "payload"), EVENT_CASES)
def test_event_round_trip(event_type: str, payload: dict[str, object]) -> None:
    raw = orjson.dumps(payload)
    [message] = _decode_all(encode_event_message(event_type, raw))
    assert message.headers == {
        ":event-type": event_type,
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert message.payload == raw
    assert message.to_response_dict()["status_code"] == 200


EXCEPTION_CASES = [
    pytest.param(
        "throttlingException", "Too many requests, please wait before trying again.", id="throttling"
    ),
    pytest.param("modelStreamErrorException", "The model stream broke.", id="model-stream-error"),
    pytest.param("internalServerException", "Internal error.", id="internal-server"),
    pytest.param("validationException", "Bad input ✗", id="validation-unicode"),
    pytest.param("serviceUnavailableException", "", id="empty-message"),
]


@pytest.mark.parametrize(("exception_type", "message_text"), EXCEPTION_CASES)
def test_exception_round_trip(exception_type: str, message_text: str) -> None:
    raw = orjson.dumps({"message": message_text})
    [message] = _decode_all(encode_exception_message(exception_type, raw))
    assert message.headers == {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    assert message.payload == raw
    # botocore turns exception messages into error responses (status 400) for its parser.
    assert message.to_response_dict()["status_code"] == 400


@pytest.mark.parametrize(
    "chunk", [1, 3, 7, 64, None], ids=["1-byte", "3-bytes", "7-bytes", "64-bytes", "whole"]
)
def test_stream_of_messages_split_anywhere(chunk: int | None) -> None:
    events = [
        encode_event_message("messageStart", b'{"role":"assistant"}'),
        *(
            encode_event_message("contentBlockDelta", orjson.dumps({"delta": {"text": f" w{i}"}}))
            for i in range(5)
        ),
        encode_exception_message("throttlingException", b'{"message":"slow down"}'),
    ]
    decoded = _decode_all(b"".join(events), chunk)
    assert [m.headers.get(":event-type") or m.headers[":exception-type"] for m in decoded] == [
        "messageStart",
        *["contentBlockDelta"] * 5,
        "throttlingException",
    ]
    assert [m.payload for m in decoded[1:6]] == [
        orjson.dumps({"delta": {"text": f" w{i}"}}) for i in range(5)
    ]


@pytest.mark.parametrize(
    ("headers", "payload"),
    [
        pytest.param([], b"", id="no-headers-no-payload"),
        pytest.param([("a", "b")], b"\x00\x01\xff", id="binary-payload"),
        pytest.param([(":event-type", "x"), ("custom", "v" * 1000)], b"{}", id="long-header-value"),
    ],
)
def test_framing_fields(headers: list[tuple[str, str]], payload: bytes) -> None:
    encoded_headers = encode_headers(headers)
    message = encode_message(encoded_headers, payload)
    assert int.from_bytes(message[0:4], "big") == len(message)
    assert int.from_bytes(message[4:8], "big") == len(encoded_headers)
    assert int.from_bytes(message[8:12], "big") == zlib.crc32(message[0:8])
    assert int.from_bytes(message[-4:], "big") == zlib.crc32(message[:-4])
    [decoded] = _decode_all(message)
    assert decoded.headers == dict(headers)
    assert decoded.payload == payload


def test_header_name_too_long_is_refused() -> None:
    with pytest.raises(ValueError, match="too long"):
        encode_headers([("n" * 256, "v")])
