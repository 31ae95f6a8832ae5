"""authz's Postgres side of budgets and rate limits, on a background thread with its own loop.

gRPC worker threads call `grant` and `lease` (blocking, with a deadline) only when their
local grant or permits run out; everything else happens in the background: following the
meter's `brproxy_usage_recorded` announcements to free reservations, writing shrunken
grants back, returning idle grants, expiring old reservations, and the replica heartbeat.

Reservations outlive this process (`reservation_journal.py`): each is journaled before its
check answers; a replica that stops gracefully, or the successor that finds its journal after
a crash, moves the reservations still held to `held_reservations`, which every replica counts
against the key's money until the meter records their calls. A replica that vanishes with
its journal (its machine lost) keeps its grants counted for HOLD_S, longer than any of its
calls can run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Coroutine
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from authz.budget import TTL_S, Ledger
from authz.rate_limit import RateLimiter, lease_size, window_of
from authz.reservation_journal import HeldReservation, ReservationJournal, adopt_dead
from core.catalogue_store import CatalogueFollower
from core.pg_listen import follow_channel

__all__ = ["BudgetStore", "grant_size"]

log = logging.getLogger("authz.budget")

T = TypeVar("T")

RECORDED_CHANNEL = "brproxy_usage_recorded"
HEARTBEAT_S = 2.0
HOLD_S = int(TTL_S)
"""A replica silent this long no longer holds grants (see the grant statement): by then every
call it admitted has ended. A replica that stops cleanly gives its grants back at once."""
IDLE_GRANT_S = 1.0
"""Unused grant of a key idle this long goes back to Postgres for other replicas."""
_WRITE_BACK_S = 0.1
CHUNK_REQUESTS = 1023
"""A grant covers, beyond what is needed, this many more requests like the one asking (if
the key can pay them, and at most half of what is free: see `grant_size`). About a second
of one busy key's traffic on one replica, so top-ups are rare."""
LOW_WATER_REQUESTS = 512
"""When less than this many requests' worth of a grant is left, it is topped up ahead: at
1,000 requests per second that leaves half a second for the top-up's round trip (a commit
in Postgres, which waits for its WAL flush) before any request would wait for it."""
TOP_UP_BACKOFF_S = 1.0
"""After a top-up the key could not pay (or that failed), the next one waits this long."""

# A grant is two statements in one transaction. The first locks the key row: every grant
# change of a key, from any replica, is serialised there. The second, run only once the lock
# is held, reads the other replicas' grants in a fresh snapshot (READ COMMITTED), so it sees
# every grant committed before it; one statement with the lock inside a CTE would not (its
# snapshot is taken before it waits for the lock, and two replicas could over-grant).
_LOCK_KEY = """
SELECT GREATEST(month_quota - CASE WHEN fee_month = $2 THEN month_fee ELSE 0 END, 0) + balance AS headroom
FROM api_keys WHERE id = $1 AND NOT disabled
FOR UPDATE
"""

# Held by others: the grants of every other replica that may still have calls in flight, and
# the reservations stopped replicas left behind.
_HELD_BY_OTHERS = f"""
SELECT (SELECT coalesce(sum(g.amount), 0)
        FROM budget_grants g JOIN authz_replicas r USING (replica_id)
        WHERE g.key_id = $1 AND g.replica_id <> $2
          AND r.heartbeat_at > now() - interval '{HOLD_S} seconds')
     + (SELECT coalesce(sum(h.amount), 0)
        FROM held_reservations h WHERE h.key_id = $1 AND h.held_until > now())
"""  # noqa: S608 - a constant, never input

# A stopped replica's reservations, moved to where every replica counts them, and its grants
# given back, in one transaction: the money stays held exactly for the calls still running.
_HOLD = """
INSERT INTO held_reservations (request_id, key_id, amount, held_until)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::numeric[], $4::timestamptz[])
    AS t(request_id, key_id, amount, held_until)
WHERE EXISTS (SELECT 1 FROM api_keys k WHERE k.id = t.key_id)
ON CONFLICT (request_id) DO NOTHING
"""
_FORGET_REPLICA = "DELETE FROM authz_replicas WHERE replica_id = $1"
# Calls that ended while no replica held their reservation (the meter deleted nothing then).
_SETTLED = """
DELETE FROM held_reservations h WHERE h.request_id = ANY($1::text[]) AND (
    EXISTS (SELECT 1 FROM released_requests r WHERE r.request_id = h.request_id)
    OR EXISTS (SELECT 1 FROM threads t
               WHERE t.event_id = ANY($2::uuid[]) AND t.event_id::text = h.request_id))
"""

_SET_GRANT = """
INSERT INTO budget_grants (replica_id, key_id, amount, updated_at) VALUES ($1, $2, $3, now())
ON CONFLICT (key_id, replica_id) DO UPDATE SET amount = EXCLUDED.amount, updated_at = now()
"""

# A replica registers (and later beats) by upserting its row.
_REGISTER = """
INSERT INTO authz_replicas (replica_id) VALUES ($1)
ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at = now()
"""

# The same two-step shape for rate-limit permits: lock the window's row, then count.
_LOCK_WINDOW = "SELECT used FROM rate_windows WHERE key_id = $1 AND window_start = $2 FOR UPDATE"
_ADD_USED = "UPDATE rate_windows SET used = used + $3 WHERE key_id = $1 AND window_start = $2"


def _uuids(ids: list[str]) -> list[uuid.UUID]:
    """The ids that are UUIDs (usage events are keyed by them; other ids were never billed)."""
    found = []
    for value in ids:
        try:
            found.append(uuid.UUID(value))
        except ValueError:
            continue
    return found


def grant_size(free: Decimal, needed: Decimal, chunk: Decimal, cost: Decimal) -> Decimal | None:
    """The grant to take when `free` money is not held by other replicas; None if too little.

    At least what is needed; at most the chunk asked for, and at most half of what is still
    free, in whole multiples of this request's cost, so that near the limit replicas share
    what is left without stranding fractions no request fits in.
    """
    if free < needed:
        return None
    share = ((free - needed) / 2 / cost).to_integral_value(rounding="ROUND_FLOOR") * cost
    return min(needed + chunk, needed + share)


class BudgetStore:
    """The Postgres operations behind Ledger and RateLimiter, for one replica."""

    def __init__(
        self, database_url: str, ledger: Ledger, limiter: RateLimiter, journal_dir: Path | None = None
    ) -> None:
        self.replica_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._database_url = database_url
        self._journal_dir = journal_dir
        self._journal: ReservationJournal | None = None
        self.ledger = ledger
        self.limiter = limiter
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="budget-store", daemon=True)
        self._pool: asyncpg.Pool | None = None
        self._key_locks: dict[int, asyncio.Lock] = {}
        self._topping_up: set[int] = set()
        self._top_up_after: dict[int, float] = {}
        self.top_ups_started = 0
        """Background top-ups asked for since start (a figure for tests and diagnosis)."""
        self._topping_up_lock = threading.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = threading.Event()
        # The model catalogue as admins edited it (prices for the estimates), followed on
        # this store's loop; readers take `.catalogue`, swapped whole on every change.
        self.models = CatalogueFollower(database_url)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop)

    async def _start(self) -> None:
        backoff = 0.2
        while self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(self._database_url, min_size=1, max_size=8)
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("budget store cannot reach the database (%s); retrying", type(error).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        while True:
            try:
                # Registered before any grant: grants reference the replica row.
                await self._pool.execute(_REGISTER, self.replica_id)
                # Before the first check: what crashed predecessors still held stays held.
                await self._adopt_dead_journals()
                break
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("cannot register this replica (%s); retrying", type(error).__name__)
                await asyncio.sleep(1.0)
        self._open_journal()
        await self.models.start()
        self._ready.set()
        self._tasks = [
            asyncio.create_task(self._heartbeat()),
            asyncio.create_task(self._follow_recorded()),
            asyncio.create_task(self._write_back()),
        ]

    def stop(self) -> None:
        async def shutdown() -> None:
            for task in self._tasks:
                task.cancel()
            await self.models.close()
            if self._pool is not None:
                # Our grants go with us, but the calls we admitted may still be running: their
                # reservations stay held (in Postgres) until the meter records them.
                now, wall = time.monotonic(), time.time()
                live = [
                    HeldReservation(request_id, r.key_id, r.amount, wall - (now - r.at))
                    for request_id, r in self.ledger.live()
                ]
                try:
                    await self._hand_over(self.replica_id, live)
                except (OSError, asyncpg.PostgresError) as error:
                    # Our row stays: other replicas count our grants for HOLD_S, and the
                    # journal stays for a successor on this data directory.
                    log.warning("could not hand over %d reservations (%s)", len(live), type(error).__name__)
                else:
                    if self._journal is not None:
                        self._journal.discard()
                        self._journal = None
                await self._pool.close()

        with_deadline = asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        with contextlib.suppress(concurrent.futures.TimeoutError, OSError):
            with_deadline.result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def _open_journal(self) -> None:
        if self._journal_dir is None:
            return
        try:
            self._journal = ReservationJournal(self._journal_dir, self.replica_id)
        except OSError as error:
            log.warning(
                "no reservation journal in %s (%s): reservations will not survive a crash of this "
                "process (its grants are then held for %d s)",
                self._journal_dir, error.strerror, HOLD_S,
            )  # fmt: skip

    async def _adopt_dead_journals(self) -> None:
        """Hand over what crashed predecessors on this data directory still held."""
        if self._journal_dir is None:
            return
        try:
            found = adopt_dead(self._journal_dir)
        except OSError as error:
            log.warning("cannot read the reservation journals in %s (%s)", self._journal_dir, error.strerror)
            return
        for dead in found:
            try:
                await self._hand_over(dead.replica_id, dead.live)
            except BaseException:
                dead.release()  # kept for the next attempt
                raise
            if dead.live:
                log.warning("took over %d reservations of calls a stopped authz admitted", len(dead.live))
            dead.discard()

    async def _hand_over(self, replica_id: str | None, live: list[HeldReservation]) -> None:
        """Move a stopped replica's reservations to `held_reservations` and forget its grants,
        in one transaction; then free those whose calls ended meanwhile."""
        assert self._pool is not None
        async with self._pool.acquire() as connection, connection.transaction():
            if live:
                await connection.execute(
                    _HOLD,
                    [r.request_id for r in live],
                    [r.key_id for r in live],
                    [r.amount for r in live],
                    [dt.datetime.fromtimestamp(r.at + TTL_S, dt.UTC) for r in live],
                )
            if replica_id is not None:
                await connection.execute(_FORGET_REPLICA, replica_id)
            if live:
                ids = [r.request_id for r in live]
                await connection.execute(_SETTLED, ids, _uuids(ids))

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coroutine` on the store's loop and wait for it (from a gRPC thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def _key_lock(self, key_id: int) -> asyncio.Lock:
        lock = self._key_locks.get(key_id)
        if lock is None:
            lock = self._key_locks[key_id] = asyncio.Lock()
        return lock

    # --- called from gRPC threads ----------------------------------------------------------

    def reserve(self, key_id: int, request_id: str, cost: Decimal, month: dt.date) -> bool:
        """Reserve `cost` for a request: locally if the grant allows, else after a larger grant.

        A busy key never waits for Postgres in steady state: when what is left of the grant
        falls below LOW_WATER_REQUESTS requests like this one, a top-up is asked for in the
        background while this request goes on. Only a key whose grant ran out (its first
        request, a burst, or a key near its limit) waits for the round trip.
        """
        for _ in range(3):
            if self.ledger.try_reserve(key_id, request_id, cost):
                self._journaled(key_id, request_id, cost)
                if self.ledger.unreserved(key_id) < cost * LOW_WATER_REQUESTS:
                    self._top_up_soon(key_id, cost, month)
                return True
            if not self.grant(key_id, cost, cost * CHUNK_REQUESTS, month):
                return False
        if self.ledger.try_reserve(key_id, request_id, cost):
            self._journaled(key_id, request_id, cost)
            return True
        return False

    def _journaled(self, key_id: int, request_id: str, cost: Decimal) -> None:
        """Journal a reservation before its check answers: a crash from here on forgets nothing."""
        if self._journal is not None:
            self._journal.reserved(request_id, key_id, cost)

    def _top_up_soon(self, key_id: int, cost: Decimal, month: dt.date) -> None:
        """Ask for a larger grant in the background, at most one request per key at a time.

        A key whose headroom cannot cover the low-water room is not asked about again for
        TOP_UP_BACKOFF_S: near its limit every request would otherwise lock its row.
        """
        now = time.monotonic()
        with self._topping_up_lock:
            if key_id in self._topping_up or self._top_up_after.get(key_id, 0.0) > now:
                return
            self._topping_up.add(key_id)
            self.top_ups_started += 1

        async def top_up() -> None:
            granted = False
            try:
                # Needed: what is reserved now plus the low-water room; the grant adds a chunk.
                granted = await self._grant(key_id, cost * LOW_WATER_REQUESTS, cost * CHUNK_REQUESTS, month)
            except (OSError, asyncpg.PostgresError) as error:
                # Harmless: the next request that finds the grant used up asks and waits.
                log.warning("grant top-up failed (%s)", type(error).__name__)
            finally:
                with self._topping_up_lock:
                    self._topping_up.discard(key_id)
                    if granted:
                        self._top_up_after.pop(key_id, None)
                    else:
                        self._top_up_after[key_id] = time.monotonic() + TOP_UP_BACKOFF_S

        coroutine = top_up()
        try:
            asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        except RuntimeError:  # the store is stopping (its loop closed): no top-up, no harm
            coroutine.close()
            with self._topping_up_lock:
                self._topping_up.discard(key_id)

    def take_permit(self, key_id: int, limit: int, now: float) -> int | None:
        """Take one of the key's rate-limit permits: None if taken, else seconds to wait."""
        window = window_of(now)
        if self.limiter.try_take(key_id, window):
            return None
        if self.lease(key_id, window, lease_size(limit), limit) and self.limiter.try_take(key_id, window):
            return None
        return max(1, int(window + 60 - now) + 1)

    def grant(
        self, key_id: int, amount: Decimal, chunk: Decimal, month: dt.date, timeout: float = 2.0
    ) -> bool:
        """Raise this replica's grant for the key so that `amount` more can be reserved.

        Asks for `chunk` more than that when the key's headroom allows, so the next requests
        reserve locally. False when the key cannot pay `amount` on top of what is held.
        """
        return self._call(self._grant(key_id, amount, chunk, month), timeout)

    async def _grant(self, key_id: int, amount: Decimal, chunk: Decimal, month: dt.date) -> bool:
        assert self._pool is not None
        if amount <= 0:
            return True  # a free request always fits
        async with self._key_lock(key_id):
            # Computed under the lock: a grant made meanwhile may already cover this request.
            needed = self.ledger.needed_grant(key_id, amount)
            if self.ledger.granted(key_id) >= needed:
                return True
            released_before = self.ledger.released_total(key_id)
            async with self._pool.acquire() as connection, connection.transaction():
                headroom = await connection.fetchval(_LOCK_KEY, key_id, month)
                if headroom is None:
                    return False  # no such key, or disabled
                held = await connection.fetchval(_HELD_BY_OTHERS, key_id, self.replica_id)
                granted = grant_size(headroom - held, needed, chunk, amount)
                if granted is None:
                    return False
                await connection.execute(_SET_GRANT, self.replica_id, key_id, granted)
            self.ledger.set_grant(key_id, granted, released_before)
            return True

    def lease(self, key_id: int, window: int, count: int, limit: int, timeout: float = 2.0) -> int:
        """Lease up to `count` permits of the key's window from Postgres; returns how many."""
        return self._call(self._lease(key_id, window, count, limit), timeout)

    async def _lease(self, key_id: int, window: int, count: int, limit: int) -> int:
        assert self._pool is not None
        start = dt.datetime.fromtimestamp(window, dt.UTC)
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "INSERT INTO rate_windows (key_id, window_start, used) VALUES ($1, $2, 0)"
                " ON CONFLICT DO NOTHING",
                key_id,
                start,
            )
            used = int(await connection.fetchval(_LOCK_WINDOW, key_id, start))
            granted = max(0, min(count, limit - used))
            if granted:
                await connection.execute(_ADD_USED, key_id, start, granted)
        if granted:
            self.limiter.add(key_id, window, granted)
        return granted

    # --- background --------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        assert self._pool is not None
        while True:
            try:
                await self._pool.execute(_REGISTER, self.replica_id)
                # Long-dead replicas' rows (and, by cascade, their grants) are removed.
                await self._pool.execute(
                    f"DELETE FROM authz_replicas WHERE heartbeat_at < now() - interval '{HOLD_S} seconds'"  # noqa: S608
                )
                await self._pool.execute(
                    "DELETE FROM rate_windows WHERE window_start < now() - interval '10 minutes'"
                )
                await self._pool.execute("DELETE FROM held_reservations WHERE held_until < now()")
                await self._pool.execute(
                    f"DELETE FROM released_requests WHERE released_at < now() - interval '{HOLD_S} seconds'"  # noqa: S608
                )
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("heartbeat failed (%s)", type(error).__name__)
            for request_id in self.ledger.expire():
                if self._journal is not None:
                    self._journal.freed(request_id)
            await asyncio.sleep(HEARTBEAT_S)

    def _on_recorded(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        for item in payload.split(","):
            _, _, request_id = item.partition(":")
            if self.ledger.release(request_id) is not None and self._journal is not None:
                self._journal.freed(request_id)

    async def _follow_recorded(self) -> None:
        # Announcements missed while the connection is down are not replayed: those
        # reservations stay held (conservative) until they expire.
        await follow_channel(
            self._database_url, RECORDED_CHANNEL, self._on_recorded, log=log, what="usage announcements"
        )

    async def _write_back(self) -> None:
        assert self._pool is not None
        while True:
            await asyncio.sleep(_WRITE_BACK_S)
            self.ledger.return_idle(IDLE_GRANT_S)
            for key_id in self.ledger.take_changed():
                try:
                    async with self._key_lock(key_id):
                        # Read now, under the key's lock: Postgres must never hold less than
                        # this replica may still use.
                        amount = self.ledger.granted(key_id)
                        await self._pool.execute(
                            "UPDATE budget_grants SET amount = $3, updated_at = now()"
                            " WHERE key_id = $1 AND replica_id = $2",
                            key_id,
                            self.replica_id,
                            amount,
                        )
                except (OSError, asyncpg.PostgresError):
                    self.ledger.mark_changed(key_id)  # retried on the next round
