"""Bounded overspend: reservations against budget grants, per authz replica (no I/O here).

Every admitted paid request reserves its estimated cost (authz/estimate.py). A replica
may only reserve within its *grant* for the key: money it obtained from Postgres with one
atomic statement that locks the key row and checks that the grants of all live replicas
together stay within the key's headroom (what is left of the monthly quota plus the
balance). Most requests reserve locally within the grant; a replica asks Postgres for a
larger grant in the background when its grant runs low, and waits for one only when it is
used up, in chunks sized to the key's headroom (many requests per round trip when a key
has plenty of money, one request's worth near the limit). So across all replicas:

    billed spend + Σ reservations in flight ≤ headroom when granted

A reservation is freed when the meter announces that the request's usage is committed
(NOTIFY `brproxy_usage_recorded`, sent in the meter's own transaction); the grant shrinks by
the same amount, since that money is now billed. The bound on overspend is therefore:

    for C concurrent requests of one key, overspend ≤ Σ over them of max(0, actual - estimate)

and since a reservation is the call's worst case (core/admission.py: its output ceiling and a
bound on its prompt), no call costs more than it reserved: billed spend never exceeds the
key's money. Requests that end without usage free their reservation through a "released"
event; reservations of requests never heard of again expire after TTL_S, which is longer
than any call can run (the edge ends a call at MAX_CALL_SECONDS).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from decimal import Decimal

from core.admission import MAX_CALL_SECONDS

__all__ = ["TTL_S", "Ledger", "Reservation"]

TTL_S = float(MAX_CALL_SECONDS + 600)
"""A reservation not released within this is dropped: its call ended long ago (the edge ends
every call at MAX_CALL_SECONDS), and its usage should have been recorded (unless the meter was
away all that while)."""
_ZERO = Decimal(0)


@dataclass(slots=True)
class Reservation:
    key_id: int
    amount: Decimal
    at: float


class Ledger:
    """One replica's grants and reservations; safe to use from many gRPC threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reservations: dict[str, Reservation] = {}
        self._reserved: dict[int, Decimal] = {}
        self._granted: dict[int, Decimal] = {}
        self._last_used: dict[int, float] = {}
        self._released: dict[int, Decimal] = {}
        self._changed: set[int] = set()

    def reserved(self, key_id: int) -> Decimal:
        return self._reserved.get(key_id, _ZERO)

    def granted(self, key_id: int) -> Decimal:
        return self._granted.get(key_id, _ZERO)

    def unreserved(self, key_id: int) -> Decimal:
        """What is left of the key's grant for new reservations."""
        return self._granted.get(key_id, _ZERO) - self._reserved.get(key_id, _ZERO)

    def try_reserve(self, key_id: int, request_id: str, amount: Decimal, now: float | None = None) -> bool:
        """Reserve within the current grant; False means a larger grant is needed first."""
        with self._lock:
            if request_id in self._reservations:
                return True  # Envoy retried the check for the same request
            reserved = self._reserved.get(key_id, _ZERO) + amount
            if reserved > self._granted.get(key_id, _ZERO):
                return False
            stamp = time.monotonic() if now is None else now
            self._reserved[key_id] = reserved
            self._reservations[request_id] = Reservation(key_id, amount, stamp)
            self._last_used[key_id] = stamp
            return True

    def needed_grant(self, key_id: int, amount: Decimal) -> Decimal:
        """The smallest grant that would admit a reservation of `amount` now."""
        return self._reserved.get(key_id, _ZERO) + amount

    def released_total(self, key_id: int) -> Decimal:
        """All money ever released for the key here (a grant request notes it before asking)."""
        return self._released.get(key_id, _ZERO)

    def set_grant(self, key_id: int, amount: Decimal, released_before: Decimal) -> None:
        """Record the grant Postgres just gave this replica (it is already written there).

        Reservations released while the request for it was in flight were billed meanwhile,
        so they come off the new grant too (and the smaller grant is written back).
        """
        with self._lock:
            since = self._released.get(key_id, _ZERO) - released_before
            self._granted[key_id] = max(amount - since, _ZERO)
            if since > 0:
                self._changed.add(key_id)

    def release(self, request_id: str) -> int | None:
        """Free a reservation whose usage is now billed; returns its key id if it was ours."""
        with self._lock:
            reservation = self._reservations.pop(request_id, None)
            if reservation is None:
                return None
            self._free(reservation)
            return reservation.key_id

    def _free(self, reservation: Reservation) -> None:
        key_id, amount = reservation.key_id, reservation.amount
        self._reserved[key_id] = max(self._reserved.get(key_id, _ZERO) - amount, _ZERO)
        # The reserved money is now billed (or was never needed): the grant shrinks with it,
        # so the grants never exceed what the key can still pay.
        self._granted[key_id] = max(self._granted.get(key_id, _ZERO) - amount, _ZERO)
        self._released[key_id] = self._released.get(key_id, _ZERO) + amount
        self._changed.add(key_id)

    def live(self) -> list[tuple[str, Reservation]]:
        """Every reservation held now, by request id."""
        with self._lock:
            return list(self._reservations.items())

    def expire(self, now: float | None = None) -> list[str]:
        """Drop reservations older than TTL_S; returns their request ids."""
        limit = (time.monotonic() if now is None else now) - TTL_S
        with self._lock:
            stale = [rid for rid, r in self._reservations.items() if r.at < limit]
            for request_id in stale:
                self._free(self._reservations.pop(request_id))
            return stale

    def return_idle(self, idle_s: float, now: float | None = None) -> None:
        """Give back unused grant of keys that made no request for `idle_s` seconds."""
        stamp = time.monotonic() if now is None else now
        with self._lock:
            for key_id, granted in self._granted.items():
                reserved = self._reserved.get(key_id, _ZERO)
                if granted > reserved and stamp - self._last_used.get(key_id, 0.0) >= idle_s:
                    self._granted[key_id] = reserved
                    self._changed.add(key_id)

    def mark_changed(self, key_id: int) -> None:
        with self._lock:
            self._changed.add(key_id)

    def take_changed(self) -> list[int]:
        """Keys whose grant shrank locally and must be written back to Postgres.

        The writer reads `granted()` when it writes (under the key's lock), never a value
        taken earlier: Postgres must never hold less than this replica may still use.
        """
        with self._lock:
            changed = list(self._changed)
            self._changed.clear()
            return changed
