"""Shipping usage events from the translator to the meter, off the request path.

`submit` never waits: events go into a queue that a background task ships in batches
(one HTTP POST per batch to the meter's `/events`). A batch leaves the queue only when
the meter answered 200, i.e. after the meter committed it; until then it is retried with
backoff, so a slow or restarting meter delays billing but loses nothing the translator
still holds. (The meter deduplicates by event id, so a retry after a lost answer is safe.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
import orjson

from core.usage import UsageEvent

__all__ = ["MeterSink"]

log = logging.getLogger("translator.meter")

_MAX_BATCH = 500


class MeterSink:
    """A batching, retrying client of the meter's ingest endpoint."""

    def __init__(self, meter_url: str, flush_interval_ms: int = 50) -> None:
        self._url = meter_url.rstrip("/") + "/events"
        self._interval = flush_interval_ms / 1000
        self._queue: list[UsageEvent] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._closing = False

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(self, event: UsageEvent) -> None:
        self._queue.append(event)
        if len(self._queue) >= _MAX_BATCH:
            self._wake.set()

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30, sock_connect=2))
        self._task = asyncio.create_task(self._run(), name="meter-sink")

    async def close(self, timeout: float = 10.0) -> None:
        """Ship what is queued (for up to `timeout` seconds), then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout)
        if self._queue:
            log.error("stopping with %d usage events not delivered to the meter", len(self._queue))
        if self._http is not None:
            await self._http.close()

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval)
                continue
            if not self._closing:
                await asyncio.sleep(self._interval)  # gather a batch
            batch = self._queue[:_MAX_BATCH]
            if await self._ship(batch):
                del self._queue[: len(batch)]
                backoff = 0.1
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _ship(self, batch: list[UsageEvent]) -> bool:
        assert self._http is not None
        body = orjson.dumps({"events": [event.to_dict() for event in batch]})
        try:
            async with self._http.post(
                self._url, data=body, headers={"content-type": "application/json"}
            ) as r:
                if r.status == 200:
                    return True
                log.warning("meter refused a batch of %d events: HTTP %d", len(batch), r.status)
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("meter unreachable (%s); %d events waiting", type(error).__name__, len(self._queue))
        return False
