"""Virtual API keys: generation, hashing at rest, and the part safe to show.

A key is `br-` followed by 40 characters drawn by the operating system's CSPRNG from a
62-letter alphabet (about 238 bits). Because keys carry that much entropy, a single
SHA-256 is the right hash at rest (as for GitHub or Stripe tokens): a slow password hash
would add per-request CPU without adding security. The plain key exists only in the
response to the request that created it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

__all__ = [
    "KEY_PREFIX",
    "bearer_token",
    "display_prefix",
    "generate_key",
    "hash_key",
    "hashes_equal",
]

KEY_PREFIX = "br-"
_ALPHABET = string.ascii_letters + string.digits
_RANDOM_CHARS = 40
_VISIBLE_CHARS = 4


def generate_key() -> str:
    """A new random key; show it once, store only `hash_key(key)`."""
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_CHARS))


def hash_key(key: str) -> bytes:
    """The at-rest form of a key (SHA-256 digest, 32 bytes)."""
    return hashlib.sha256(key.encode("utf-8")).digest()


def hashes_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison of two key hashes."""
    return hmac.compare_digest(a, b)


def display_prefix(key: str) -> str:
    """The part of a key that may be listed: `br-` plus its first four characters."""
    return key[: len(KEY_PREFIX) + _VISIBLE_CHARS]


def bearer_token(authorization: str | None, x_api_key: str | None = None) -> str | None:
    """The key a client presented: `Authorization: Bearer <key>` or Anthropic's `x-api-key`."""
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    return None
