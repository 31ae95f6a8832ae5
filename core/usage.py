"""The usage event: what a translator reports to the meter after each Bedrock call.

An event is immutable and carries its own identity (`event_id`, a UUID fixed by the
translator when the call starts). The meter records each event id at most once, so an
event may be delivered any number of times: at-least-once delivery plus an idempotent
sink gives exactly-once billing.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from typing import Any

from core.catalogue import Prices

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
    """"ok"; "error" (Bedrock failed); "client_closed" (the client went away); "released"
    (the request ended without a model call: nothing to bill, only its reservation to free)."""
    estimated: bool = False
    """True when Bedrock never reported usage and the token counts are our estimate."""
    api: str = "openai.chat"
    user: str | None = None
    """The OpenAI `user` field, if the client sent one."""
    prices: list[str] | None = None
    """USD per million tokens (input, output, cache read, cache write) the call was admitted
    and served at, as exact decimal strings: the meter bills at these, never at prices edited
    after the call was admitted (None from translators older than this field)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def release(cls, event_id: str, key_id: int, occurred_at: float) -> UsageEvent:
        """The event of a request that ended before Bedrock billed anything."""
        return cls(event_id, key_id, "", "", occurred_at, status="released")

    @property
    def billable(self) -> bool:
        """Whether the event becomes a thread (it used tokens, or it is a completed call)."""
        if self.status == "released":
            return False
        tokens = self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens
        return tokens > 0 or self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UsageEvent:
        """Parse an event from the wire, ignoring unknown fields (newer translators).

        Raises ValueError for anything malformed, so one bad event never fails a batch.
        """
        if not isinstance(data, dict):
            raise ValueError("an event must be a JSON object")
        known = {f.name for f in fields(cls)}
        try:
            event = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as error:
            raise ValueError(str(error)) from None
        if not isinstance(event.event_id, str):
            raise ValueError("event_id must be a UUID string")
        uuid.UUID(event.event_id)  # raises ValueError on a malformed id
        occurred = event.occurred_at
        if (
            isinstance(occurred, bool)
            or not isinstance(occurred, int | float)
            or not 0 <= occurred < 32503680000
        ):
            raise ValueError("occurred_at must be a Unix time in seconds")
        for name in ("model", "bedrock_model_id", "prompt", "completion", "status", "api"):
            if not isinstance(getattr(event, name), str):
                raise ValueError(f"{name} must be a string")
        for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
            value = getattr(event, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
        if not isinstance(event.key_id, int) or isinstance(event.key_id, bool) or event.key_id <= 0:
            raise ValueError("key_id must be a positive integer")
        if event.prices is not None:
            _check_prices(event.prices)
        return event

    def with_prices(self, prices: Prices) -> UsageEvent:
        """This event, billed at `prices` (see `prices`)."""
        self.prices = [str(prices.input), str(prices.output), str(prices.cache_read), str(prices.cache_write)]
        return self

    def admitted_prices(self) -> Prices | None:
        """The prices the call was admitted and served at, if the event carries them."""
        if self.prices is None:
            return None
        return Prices(*(Decimal(price) for price in self.prices))


def _check_prices(prices: Any) -> None:
    if not isinstance(prices, list) or len(prices) != 4 or not all(isinstance(p, str) for p in prices):
        raise ValueError("prices must be four decimal strings")
    for price in prices:
        try:
            value = Decimal(price)
        except ArithmeticError:
            raise ValueError("prices must be four decimal strings") from None
        if not value.is_finite() or value < 0:
            raise ValueError("prices must be finite and not negative")
