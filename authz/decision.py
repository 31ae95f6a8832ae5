"""Who may make this request: the pure admission logic of authz (no I/O, no gRPC).

Inputs are the request's path, method and credential headers plus the in-memory key
cache; the output is either "allow, and name the caller to the upstream" or "deny with
this status and this body". The gRPC server turns a Decision into Envoy's CheckResponse.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from core.api_keys import bearer_token, hash_key, hashes_equal
from core.errors import error_body
from core.internal_headers import ROLE_BOOTSTRAP
from core.quota import is_out_of_money, spends_money

__all__ = ["Allow", "Decision", "Deny", "KeyRecord", "decide"]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What authz knows about one key (a row of `api_keys`, minus what it does not need)."""

    id: int
    key_hash: bytes
    role: str
    month_quota: Decimal
    month_fee: Decimal
    fee_month: dt.date
    balance: Decimal
    disabled: bool
    rate_limit_rpm: int = 0
    """Requests per minute across all replicas; 0 means no limit."""


@dataclass(frozen=True, slots=True)
class Allow:
    key_id: int
    role: str
    record: KeyRecord | None = None
    """The key's cached row (None for the bootstrap key)."""


@dataclass(frozen=True, slots=True)
class Deny:
    status: int
    body: bytes


Decision = Allow | Deny


def _deny(path: str, status: int, message: str, code: str | None = None) -> Deny:
    body: dict[str, Any] = error_body(path, status, message, code=code)
    return Deny(status, orjson.dumps(body))


def decide(
    *,
    path: str,
    method: str,
    authorization: str | None,
    x_api_key: str | None,
    lookup: Callable[[bytes], KeyRecord | None],
    bootstrap_hash: bytes | None,
    current_month: dt.date,
    reserved: Callable[[int], Decimal] | None = None,
) -> Decision:
    """Admit or refuse one request.

    `lookup` finds a key by its hash; `bootstrap_hash` is the hash of ADMIN_API_KEY (or None);
    `reserved` gives the spend already committed to a key's requests in flight.
    """
    path = path.split("?", 1)[0]
    token = bearer_token(authorization, x_api_key)
    if token is None:
        return _deny(path, 401, "Missing API key: send 'Authorization: Bearer br-…'.", "invalid_api_key")
    digest = hash_key(token)

    if bootstrap_hash is not None and hashes_equal(digest, bootstrap_hash):
        if path.startswith("/admin/") or path == "/admin":
            return Allow(0, ROLE_BOOTSTRAP)
        return _deny(path, 403, "The bootstrap admin key can only be used on /admin routes.")

    record = lookup(digest)
    if record is None:
        return _deny(path, 401, "Invalid API key.", "invalid_api_key")
    if record.disabled:
        return _deny(path, 401, "This API key has been disabled.", "invalid_api_key")

    if (path.startswith("/admin/") or path == "/admin") and record.role != "admin":
        return _deny(path, 403, "This route needs an admin key.")

    if spends_money(method, path):
        in_flight = reserved(record.id) if reserved is not None else Decimal(0)
        if is_out_of_money(
            record.month_quota,
            record.month_fee,
            record.fee_month,
            record.balance,
            current_month,
            in_flight,
        ):
            return _deny(
                path,
                429,
                "Please recharge: this key's monthly quota is used up and its balance is not positive.",
                "insufficient_quota",
            )
    return Allow(record.id, record.role, record)
