"""The meter's HTTP server: `POST /events` ingests usage batches, `GET /health`.

Every accepted request is answered 200 only after its events are committed to Postgres,
so a translator may forget a batch as soon as it sees the 200. Batches that arrive while a
write is running are merged into the next transaction (one writer task): under load the
meter commits a few large transactions rather than many small ones.

Only a caller with the deployment's internal token (core/internal_auth.py), i.e. a
translator, may post events; `/health` stays open to probes and tells them nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson

from core.catalogue_store import CatalogueFollower
from core.heap import freeze_startup_heap
from core.internal_auth import InternalToken, log_refusal
from core.internal_headers import INTERNAL_TOKEN
from core.quota import billing_month
from core.settings import Settings, database_url_from_env
from core.usage import UsageEvent
from meter.billing import ThreadRow, price_event
from meter.recorder import record_batch

__all__ = ["MeterApp"]

log = logging.getLogger("meter")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_MAX_BODY = 64 * 1024 * 1024
_INTERNAL_TOKEN = INTERNAL_TOKEN.encode()
_HEALTH_CACHE_S = 0.25
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


class MeterApp:
    """ASGI application around one batching Postgres writer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._internal_token = InternalToken.from_settings(settings)
        self._pool: asyncpg.Pool | None = None
        # A flood of probes costs at most one database round trip per 250 ms.
        self._health_lock = asyncio.Lock()
        self._health_checked: tuple[float, bool] = (float("-inf"), False)
        self._pending: list[tuple[list[ThreadRow], list[tuple[int, str]], asyncio.Future[int]]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.recorded = 0
        # Prices as admins set them (model_overrides), followed live: calls are billed at
        # the price in force when the meter records them.
        self.models = CatalogueFollower(settings.database_url or database_url_from_env())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        headers = dict(scope["headers"])
        refusal = self._internal_token.refusal(headers.get(_INTERNAL_TOKEN))
        if path == "/health" and method == "GET":
            await self._health(send, with_details=refusal is None)
        elif refusal is not None:
            log_refusal(log, refusal, method, path, headers.get(b"x-request-id"))
            await self._reply(send, 401, {"error": "only BRProxy's own services may call the meter"})
        elif path == "/events" and method == "POST":
            await self._ingest(receive, send)
        else:
            await self._reply(send, 404, {"error": f"unknown route {method} {path}"})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self._pool = await asyncpg.create_pool(
                        self.settings.require_database_url(), min_size=1, max_size=4, command_timeout=60
                    )
                except (OSError, asyncpg.PostgresError) as error:
                    await send({"type": "lifespan.startup.failed", "message": f"database: {error}"})
                    return
                await self.models.start()
                self._writer = asyncio.create_task(self._write_forever(), name="meter-writer")
                freeze_startup_heap()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.models.close()
                if self._writer is not None:
                    self._writer.cancel()
                if self._pool is not None:
                    await self._pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    @staticmethod
    async def _reply(send: Send, status: int, body: dict[str, Any]) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": orjson.dumps(body)})

    async def _health(self, send: Send, *, with_details: bool) -> None:
        if not await self._database_up():
            await self._reply(send, 503, {"status": "database unavailable"})
            return
        details = {"recorded": self.recorded} if with_details else {}
        await self._reply(send, 200, {"status": "ok", **details})

    async def _database_up(self) -> bool:
        assert self._pool is not None
        async with self._health_lock:
            checked_at, up = self._health_checked
            if time.monotonic() - checked_at < _HEALTH_CACHE_S:
                return up
            try:
                async with asyncio.timeout(1):
                    await self._pool.fetchval("SELECT 1")
                up = True
            except (OSError, asyncpg.PostgresError, TimeoutError):
                up = False
            self._health_checked = (time.monotonic(), up)
            return up

    async def _ingest(self, receive: Receive, send: Send) -> None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > _MAX_BODY:
                await self._reply(send, 413, {"error": "batch too large"})
                return
            if not message.get("more_body", False):
                break
        try:
            raw_events = orjson.loads(b"".join(chunks))["events"]
            assert isinstance(raw_events, list)
        except (orjson.JSONDecodeError, KeyError, TypeError, AssertionError):
            await self._reply(send, 400, {"error": 'body must be {"events": [...]}'})
            return
        rows: list[ThreadRow] = []
        released: list[tuple[int, str]] = []
        rejected: list[str] = []
        for raw in raw_events:
            try:
                event = UsageEvent.from_dict(raw)
                if not event.billable:
                    released.append((event.key_id, event.event_id))
                    continue
                row, priced = price_event(event, self.models.catalogue)
            except (TypeError, ValueError, KeyError) as error:
                # A malformed event can never become valid by retrying; refusing the batch
                # would block every good event behind it, so it is logged and dropped.
                event_id = raw.get("event_id") if isinstance(raw, dict) else None
                log.error("rejected malformed usage event %s: %s", event_id, error)
                rejected.append(str(event_id))
                continue
            if not priced:
                log.error(
                    "no price for model %s (event %s); recorded at zero", row.bedrock_model_id, row.event_id
                )
            rows.append(row)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((rows, released, future))
        self._wake.set()
        try:
            inserted = await future
        except (OSError, asyncpg.PostgresError) as error:
            await self._reply(send, 503, {"error": f"database unavailable ({type(error).__name__})"})
            return
        await self._reply(send, 200, {"accepted": len(rows), "new": inserted, "rejected": rejected})

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            work, self._pending = self._pending, []
            if not work:
                continue
            rows = [row for batch, _, _ in work for row in batch]
            released = [pair for _, batch, _ in work for pair in batch]
            try:
                inserted = await self._write(rows, released)
            except Exception as error:  # every waiter must learn the batch failed
                log.warning("could not record %d events: %s", len(rows), type(error).__name__)
                for _, _, future in work:
                    if not future.done():
                        future.set_exception(
                            error
                            if isinstance(error, OSError | asyncpg.PostgresError)
                            else OSError(str(error))
                        )
                continue
            self.recorded += inserted
            for _, _, future in work:
                if not future.done():
                    future.set_result(inserted)

    async def _write(self, rows: list[ThreadRow], released: list[tuple[int, str]]) -> int:
        assert self._pool is not None
        tz = self.settings.billing_timezone
        attempts = 5
        for attempt in range(attempts):
            try:
                async with self._pool.acquire() as connection:
                    return await record_batch(connection, rows, billing_month(tz), tz, released)
            except _RETRYABLE:
                if attempt == attempts - 1:
                    raise
                # Another meter replica locked the same rows in another order; the
                # transaction rolled back entirely, so running it again is safe.
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")
