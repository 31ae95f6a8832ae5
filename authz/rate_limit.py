"""Per-key request rate limits shared by all authz replicas (local state; no I/O here).

Mechanism: fixed one-minute windows counted in Postgres (`rate_windows`). A replica
*leases* permits for the current window from Postgres in small chunks with one atomic
statement that never lets the window's total pass the key's limit, then admits requests
locally against its leased permits. Accuracy:

- never more than `rate_limit_rpm` requests admitted in a window, across all replicas;
- possibly fewer: permits a replica leased but did not use by the window's end are lost
  (at most one chunk per replica per window: LEASE_FRACTION of the limit, at least 1);
- as with any fixed window, a burst straddling a window boundary can see up to twice the
  limit within sixty seconds.
"""

from __future__ import annotations

import threading

__all__ = ["LEASE_FRACTION", "RateLimiter", "lease_size", "window_of"]

LEASE_FRACTION = 20
"""A lease is 1/20 of the per-minute limit (at least one permit)."""


def window_of(now: float) -> int:
    """The start of the one-minute window containing `now` (Unix seconds)."""
    return int(now // 60) * 60


def lease_size(limit: int) -> int:
    return max(1, limit // LEASE_FRACTION)


class RateLimiter:
    """Permits this replica holds for the current window, per key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._permits: dict[int, tuple[int, int]] = {}

    def try_take(self, key_id: int, window: int) -> bool:
        with self._lock:
            held_window, count = self._permits.get(key_id, (window, 0))
            if held_window != window or count <= 0:
                return False
            self._permits[key_id] = (window, count - 1)
            return True

    def add(self, key_id: int, window: int, count: int) -> None:
        with self._lock:
            held_window, held = self._permits.get(key_id, (window, 0))
            self._permits[key_id] = (window, (held if held_window == window else 0) + count)
