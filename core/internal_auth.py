"""The per-deployment internal token: how a service tells a request that came through the edge.

The services behind Envoy trust the `x-brproxy-*` headers that name the caller. On one
machine they listen on Unix sockets only their owner may use (core/unix_sockets.py); in
Kubernetes or Compose on TCP, where other pods can reach them. Either way Envoy adds
one more header to everything it sends them, `x-brproxy-internal-token` (on the gRPC
call to authz, as metadata), carrying a secret only the deployment knows: `brproxy up`
makes one per data dir, and Kubernetes or Compose hand it over from a Secret. Every
service refuses any request without it, before reading anything else; a client can never
send it through the edge, since Envoy strips every `x-brproxy-*` header a client sends.

Health endpoints the supervisor or Kubernetes probe directly stay open: they change
nothing and tell no more than the public `/health` does.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings

__all__ = [
    "TOKEN_PATTERN",
    "InternalToken",
    "generate_token",
    "log_refusal",
    "token_problem",
]

TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~+/=-]{32,512}")
"""What a token may look like: at least 32 characters of hex, base64 or base64url (what
`openssl rand -hex 32` or `-base64 32` print). The alphabet is safe as an HTTP header value,
as gRPC metadata, in Envoy's header formatter (no `%`) and in a shell or YAML file."""


def token_problem(value: str) -> str | None:
    """Why `value` cannot be the internal token, or None. Never quotes the value."""
    if TOKEN_PATTERN.fullmatch(value):
        return None
    if len(value) < 32:
        return "must be at least 32 characters long (e.g. `openssl rand -hex 32`)"
    if len(value) > 512:
        return "must be at most 512 characters long"
    return "may only hold letters, digits and . _ ~ + / = - (e.g. `openssl rand -hex 32`)"


def generate_token() -> str:
    """A new random token (256 bits, base64url)."""
    return secrets.token_urlsafe(32)


class InternalToken:
    """The deployment's internal token: what senders add, and the check every service makes.

    Only a digest is compared, in constant time, so neither the token's value nor its length
    leaks through timing. Its repr never shows the token.
    """

    __slots__ = ("_digest", "_value")

    def __init__(self, value: str) -> None:
        problem = token_problem(value)
        if problem is not None:
            raise ValueError(f"internal token {problem}")
        self._value = value
        self._digest = hashlib.sha256(value.encode()).digest()

    @classmethod
    def from_settings(cls, settings: Settings) -> InternalToken:
        """The token `BRPROXY_INTERNAL_TOKEN` names; a clear stop for a service started without one."""
        if settings.internal_token is None:
            raise SystemExit(
                "BRProxy: BRPROXY_INTERNAL_TOKEN is not set: every service needs the deployment's "
                "internal token (start the stack with `brproxy up`, or set it from your Secret)"
            )
        return cls(settings.internal_token.get_secret_value())

    @property
    def value(self) -> str:
        """The token itself, for a sender (Envoy's configuration, the meter's client)."""
        return self._value

    def refusal(self, presented: str | bytes | None) -> str | None:
        """None when `presented` is the token; else why the request is refused (for the log)."""
        if presented is None:
            return "no internal token"
        if isinstance(presented, str):
            try:
                presented = presented.encode()
            except UnicodeError:  # a lone surrogate: certainly not the token
                return "wrong internal token"
        if hmac.compare_digest(hashlib.sha256(presented).digest(), self._digest):
            return None
        return "wrong internal token"

    def __repr__(self) -> str:
        return "InternalToken(<hidden>)"


def log_refusal(
    log: logging.Logger, reason: str, method: str, path: str, request_id: str | bytes | None
) -> None:
    """The one log line for a refused request: why and which, never any header's value but its id.

    The path and id come from whoever sent the request; they are quoted and cut short so they
    cannot forge or flood log lines.
    """
    if isinstance(request_id, bytes):
        request_id = request_id.decode("latin-1")
    log.warning(
        "refused %s %s: %s (request id %s); only the edge may call this service",
        method[:16],
        ascii(path[:200]),
        reason,
        ascii(request_id[:64]) if request_id else "-",
    )
