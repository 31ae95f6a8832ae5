"""The usage event: what a translator reports to the meter after each Bedrock call.

An event is immutable and carries its own identity (`event_id`, a UUID fixed by the
translator when the call starts). The meter records each event id at most once, so an
event may be delivered any number of times: at-least-once delivery plus an idempotent
sink gives exactly-once billing.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["UsageEvent", "new_event_id"]


def new_event_id() -> str:
    return str(uuid.uuid4())


@dataclass(slots=True)
class UsageEvent:
    """One Bedrock call as the meter needs it to bill and to keep the chat log."""

    event_id: str
    key_id: int
    model: str
    """The model name the client asked for."""
    bedrock_model_id: str
    """The id actually sent to Bedrock; the meter prices the call from it."""
    occurred_at: float
    """Unix time (seconds) when the call started."""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    client_session_id: str | None = None
    """The client's `Session-Id` header; sessions are per key + this id."""
    stream: bool = False
    prompt: str = ""
    """The last user turn, as text."""
    completion: str = ""
    whole_prompt: Any = None
    """Every message sent, system included, as JSON."""
    invocation_latency_ms: int | None = None
    """Bedrock's own latency for the call (its `metrics.latencyMs`)."""
    first_byte_latency_ms: int | None = None
    """From the start of the call to the first byte of Bedrock's answer."""
    status: str = "ok"
    """"ok", "error" (Bedrock failed mid-call) or "client_closed" (the client went away)."""
    estimated: bool = False
    """True when Bedrock never reported usage and the token counts are our estimate."""
    api: str = "openai.chat"
    user: str | None = None
    """The OpenAI `user` field, if the client sent one."""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UsageEvent:
        """Parse an event from the wire, ignoring unknown fields (newer translators)."""
        known = {f.name for f in fields(cls)}
        event = cls(**{k: v for k, v in data.items() if k in known})
        uuid.UUID(event.event_id)  # raises ValueError on a malformed id
        for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
            value = getattr(event, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
        if not isinstance(event.key_id, int) or event.key_id <= 0:
            raise ValueError("key_id must be a positive integer")
        return event
