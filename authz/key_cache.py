"""The in-memory key cache, kept current by Postgres LISTEN/NOTIFY.

Every request is decided from memory: no database round trip on the request path. The
cache is filled from `api_keys` at start and then follows the `brproxy_key_changed`
notifications that a trigger sends for every insert, update and delete (key edits,
recharges, and the meter's spend updates), so a change reaches every authz replica within
milliseconds. To never miss a change, the listener subscribes *before* it loads the
table, reloads everything after any reconnect, and also reloads on a timer as a safety net.

The cache is read by gRPC worker threads and written by one background thread running an
asyncio loop; single dict operations and whole-dict swaps are atomic under the GIL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import logging
import threading
import time
from decimal import Decimal
from typing import Any

import asyncpg

from authz.decision import KeyRecord
from core.pg_listen import follow_channel

__all__ = ["KeyCache"]

log = logging.getLogger("authz.keys")

CHANNEL = "brproxy_key_changed"
MISS_LOOKUPS_PER_S = 50
MISS_TTL_S = 2.0
MISS_TIMEOUT_S = 0.5
_SELECT_ALL = (
    "SELECT id, key_hash, role, month_quota, month_fee, fee_month, balance, disabled, rate_limit_rpm"
    " FROM api_keys"
)


def _record_from_row(row: Any) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        key_hash=bytes(row["key_hash"]),
        role=row["role"],
        month_quota=row["month_quota"],
        month_fee=row["month_fee"],
        fee_month=row["fee_month"],
        balance=row["balance"],
        disabled=row["disabled"],
        rate_limit_rpm=row["rate_limit_rpm"],
    )


def _record_from_notification(payload: dict[str, Any]) -> KeyRecord:
    return KeyRecord(
        id=int(payload["id"]),
        key_hash=bytes.fromhex(payload["key_hash"]),
        role=payload["role"],
        month_quota=_decimal(payload["month_quota"]),
        month_fee=_decimal(payload["month_fee"]),
        fee_month=dt.date.fromisoformat(payload["fee_month"]),
        balance=_decimal(payload["balance"]),
        disabled=bool(payload["disabled"]),
        rate_limit_rpm=int(payload.get("rate_limit_rpm", 0)),
    )


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


class KeyCache:
    """Keys by hash, loaded from Postgres and kept current in a background thread."""

    def __init__(self, database_url: str, resync_interval_s: float = 30.0) -> None:
        self._database_url = database_url
        self._resync_interval_s = resync_interval_s
        self._by_hash: dict[bytes, KeyRecord] = {}
        self._hash_by_id: dict[int, bytes] = {}
        self._loaded = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="key-cache", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_load = 0.0
        self._pending: list[dict[str, Any]] | None = None
        """Changes announced while a full load runs (re-applied after it)."""
        self._misses: dict[bytes, float] = {}
        self._miss_lock = threading.Lock()
        self._miss_tokens = float(MISS_LOOKUPS_PER_S)
        self._miss_at = time.monotonic()
        self._fetch_lock = asyncio.Lock()
        self._fetch_connection: asyncpg.Connection | None = None

    # --- read side (gRPC threads) -------------------------------------------------------

    def lookup(self, key_hash: bytes) -> KeyRecord | None:
        """The key with this hash, from memory; a miss is checked once against Postgres.

        A key created a moment ago on another replica may not have been announced here yet,
        so a miss asks the database (at most MISS_LOOKUPS_PER_S a second, and a hash found
        missing is not asked about again for MISS_TTL_S): a flood of invalid keys costs the
        database almost nothing.
        """
        record = self._by_hash.get(key_hash)
        if record is not None or not self._loaded.is_set():
            return record
        now = time.monotonic()
        if self._misses.get(key_hash, 0.0) > now or not self._take_miss_budget(now):
            return None
        loop = self._loop
        if loop is None:
            return None
        try:
            record = asyncio.run_coroutine_threadsafe(self._fetch(key_hash), loop).result(MISS_TIMEOUT_S)
        except (concurrent.futures.TimeoutError, OSError, asyncpg.PostgresError):
            return None
        if record is None:
            if len(self._misses) > 10_000:
                self._misses.clear()
            self._misses[key_hash] = now + MISS_TTL_S
        return record

    def _take_miss_budget(self, now: float) -> bool:
        with self._miss_lock:
            self._miss_tokens = min(
                MISS_LOOKUPS_PER_S, self._miss_tokens + (now - self._miss_at) * MISS_LOOKUPS_PER_S
            )
            self._miss_at = now
            if self._miss_tokens < 1:
                return False
            self._miss_tokens -= 1
            return True

    async def _fetch(self, key_hash: bytes) -> KeyRecord | None:
        async with self._fetch_lock:
            if self._fetch_connection is None or self._fetch_connection.is_closed():
                self._fetch_connection = await asyncpg.connect(self._database_url, timeout=MISS_TIMEOUT_S)
            row = await self._fetch_connection.fetchrow(_SELECT_ALL + " WHERE key_hash = $1", key_hash)
        if row is None:
            return None
        record = _record_from_row(row)
        self._hash_by_id[record.id] = record.key_hash
        self._by_hash[record.key_hash] = record
        return record

    @property
    def ready(self) -> bool:
        """True once the first full load has finished."""
        return self._loaded.is_set()

    def wait_ready(self, timeout: float) -> bool:
        return self._loaded.wait(timeout)

    def __len__(self) -> int:
        return len(self._by_hash)

    # --- write side (the background thread) ---------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(lambda: None)
        self._thread.join(timeout=5)

    def _replace_all(self, records: list[KeyRecord]) -> None:
        by_hash = {r.key_hash: r for r in records}
        self._hash_by_id = {r.id: r.key_hash for r in records}
        self._by_hash = by_hash  # one atomic swap: readers see the old or the new dict
        self._loaded.set()

    def _apply(self, payload: dict[str, Any]) -> None:
        key_id = int(payload["id"])
        if payload.get("deleted"):
            old = self._hash_by_id.pop(key_id, None)
            if old is not None:
                self._by_hash.pop(old, None)
            return
        record = _record_from_notification(payload)
        old = self._hash_by_id.get(key_id)
        if old is not None and old != record.key_hash:
            self._by_hash.pop(old, None)
        self._hash_by_id[key_id] = record.key_hash
        self._by_hash[record.key_hash] = record

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            # Exact: money arrives as JSON numerals and must not pass through a float.
            change = json.loads(payload, parse_float=Decimal)
        except ValueError:
            log.warning("ignored a malformed key notification")
            return
        if self._pending is not None:
            # A full load is running; its snapshot may predate this change, so apply the
            # change again after the snapshot replaces the cache.
            self._pending.append(change)
        self._apply(change)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._follow())
            if self._fetch_connection is not None and not self._fetch_connection.is_closed():
                loop.run_until_complete(self._fetch_connection.close())
        finally:
            loop.close()

    async def _follow(self) -> None:
        await follow_channel(
            self._database_url,
            CHANNEL,
            self._on_notify,
            self._session,
            log=log,
            what="key cache",
            stopping=self._stopping.is_set,
        )

    async def _session(self, connection: asyncpg.Connection) -> None:
        await self._load_all(connection)
        while not self._stopping.is_set() and not connection.is_closed():
            await asyncio.sleep(min(self._resync_interval_s, 0.5))
            if self._due_for_resync():
                await self._load_all(connection)

    def _due_for_resync(self) -> bool:
        loop = self._loop
        assert loop is not None
        return loop.time() - self._last_load >= self._resync_interval_s

    async def _load_all(self, connection: asyncpg.Connection) -> None:
        self._pending = []
        try:
            rows = await connection.fetch(_SELECT_ALL)
            self._replace_all([_record_from_row(row) for row in rows])
            for change in self._pending:
                self._apply(change)
        finally:
            self._pending = None
        loop = self._loop
        assert loop is not None
        self._last_load = loop.time()
        log.debug("loaded %d keys", len(rows))
