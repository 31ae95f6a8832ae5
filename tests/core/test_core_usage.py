"""The usage event on the wire: validation in `UsageEvent.from_dict`."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from core.usage import UsageEvent, new_event_id

EVENT_ID = "0b7c5e4e-2f55-4d7e-9a51-3c1f6f3c2f10"


def wire(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event_id": EVENT_ID,
        "key_id": 7,
        "model": "claude-3-haiku",
        "bedrock_model_id": "anthropic.claude-3-haiku-20240307-v1:0",
        "occurred_at": 1_750_000_000.5,
        "input_tokens": 10,
        "output_tokens": 20,
        "cache_read_tokens": 3,
        "cache_write_tokens": 4,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not _DROP}


_DROP = object()


def test_new_event_id_is_a_uuid4() -> None:
    ids = {new_event_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(uuid.UUID(i).version == 4 for i in ids)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(wire(), {"input_tokens": 10, "cache_write_tokens": 4, "status": "ok"}, id="valid"),
        pytest.param(
            wire(input_tokens=_DROP, output_tokens=_DROP, cache_read_tokens=_DROP, cache_write_tokens=_DROP),
            {"input_tokens": 0, "api": "openai.chat"},
            id="defaults",
        ),
        pytest.param(wire(future_field="x", another={"a": 1}), {"key_id": 7}, id="unknown-fields-ignored"),
        pytest.param(wire(event_id=EVENT_ID.upper()), {"event_id": EVENT_ID.upper()}, id="uppercase-uuid"),
        pytest.param(wire(event_id=EVENT_ID.replace("-", "")), {}, id="uuid-without-dashes"),
        pytest.param(wire(input_tokens=0, output_tokens=0), {"output_tokens": 0}, id="zero-tokens"),
        pytest.param(
            wire(
                client_session_id="s-1",
                user="u",
                whole_prompt=[{"role": "user"}],
                stream=True,
                status="client_closed",
                estimated=True,
            ),
            {"client_session_id": "s-1", "user": "u", "estimated": True},
            id="optional-fields",
        ),
    ],
)
def test_from_dict_accepts(data: dict[str, Any], expected: dict[str, Any]) -> None:
    event = UsageEvent.from_dict(data)
    for name, value in expected.items():
        assert getattr(event, name) == value


# Every malformed event must raise ValueError: the meter (meter/server.py `_ingest`) drops an
# event only on TypeError/ValueError/KeyError; anything else fails the whole batch with a 500
# and the translator's MeterSink retries that batch forever.
REJECTED = [
    pytest.param(wire(event_id="not-a-uuid"), id="bad-uuid"),
    pytest.param(wire(event_id=""), id="empty-uuid"),
    pytest.param(wire(event_id=EVENT_ID + "0"), id="uuid-too-long"),
    pytest.param(wire(event_id=123), id="numeric-event-id"),
    pytest.param(wire(event_id=["x"]), id="list-event-id"),
    pytest.param(wire(event_id=None), id="null-event-id"),
    pytest.param(wire(input_tokens=-1), id="negative-input"),
    pytest.param(wire(output_tokens=-1), id="negative-output"),
    pytest.param(wire(cache_read_tokens=-5), id="negative-cache-read"),
    pytest.param(wire(cache_write_tokens=-5), id="negative-cache-write"),
    pytest.param(wire(input_tokens=1.5), id="float-tokens"),
    pytest.param(wire(output_tokens="20"), id="string-tokens"),
    pytest.param(wire(output_tokens=None), id="null-tokens"),
    pytest.param(wire(input_tokens=True), id="boolean-tokens"),
    pytest.param(wire(key_id=0), id="key-id-zero"),
    pytest.param(wire(key_id=-3), id="key-id-negative"),
    pytest.param(wire(key_id="7"), id="key-id-string"),
    pytest.param(wire(key_id=True), id="boolean-key-id-is-not-key-1"),
    pytest.param(wire(model=_DROP), id="missing-required-field"),
    pytest.param({}, id="empty-object"),
    pytest.param([1, 2], id="not-an-object"),
]


@pytest.mark.parametrize("data", REJECTED)
def test_from_dict_rejects_with_value_error(data: Any) -> None:
    with pytest.raises(ValueError):
        UsageEvent.from_dict(data)


def test_to_dict_from_dict_round_trip() -> None:
    event = UsageEvent.from_dict(wire(client_session_id="abc", prompt="hi", extra={"k": [1, 2]}))
    again = UsageEvent.from_dict(event.to_dict())
    assert again == event
    assert again.to_dict() == event.to_dict()
