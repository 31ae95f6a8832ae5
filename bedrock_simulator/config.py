"""Settings of one simulator instance."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SimulatorConfig"]


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How the simulator behaves; every field has a default that suits tests.

    Authentication: with neither ``access_key_id`` nor ``secret_access_key`` set, any well-formed
    SigV4 ``Authorization`` header is accepted. ``access_key_id`` alone restricts the access key;
    ``secret_access_key`` makes the simulator recompute and check the signature like AWS.
    """

    latency_ms: float = 0.0
    """Delay before the first byte of every answer (time to first token)."""

    tokens_per_second: float = 0.0
    """Output pace; 0 means unlimited (all tokens at once)."""

    output_tokens: int = 16
    """Output tokens planned when the prompt does not ask for a number."""

    access_key_id: str | None = None
    secret_access_key: str | None = None

    region: str | None = None
    """If set, the SigV4 credential scope must name this region."""

    max_clock_skew_s: float | None = 900.0
    """How far ``x-amz-date`` may be from the simulator's clock; None turns the check off."""

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.tokens_per_second < 0:
            raise ValueError("latency_ms and tokens_per_second must be >= 0")
        if self.output_tokens < 1:
            raise ValueError("output_tokens must be >= 1")
