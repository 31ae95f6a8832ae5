"""Shipping usage events from the translator to the meter, durably and off the request path.

`submit` never waits on the meter: it writes the event to the durable spool
(`usage_spool.py`) and returns. A background task turns the spool's active segment into a
batch every flush interval (or sooner when it is full), fsyncs it, and POSTs it to the
meter's `/events`. A batch is deleted only after the meter answered 200, which it does
only after committing it; until then it is retried with backoff, and a translator that
restarts replays every batch its predecessor left. The meter deduplicates by event id,
so a batch sent twice (say, the answer was lost) is billed once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import urllib.parse
from pathlib import Path

from core.internal_headers import INTERNAL_TOKEN
from core.usage import UsageEvent
from translator.inflight_journal import InflightJournal
from translator.pooled_http import HttpFailure, PooledHttp
from translator.usage_spool import Segment, UsageSpool

__all__ = ["MeterSink"]

log = logging.getLogger("translator.meter")

MAX_BATCH = 500
"""Events per batch; a full active segment is shipped before the interval ends."""
MAX_BATCH_BYTES = 16 * 2**20
"""A batch larger than this goes in parts (the meter takes at most 64 MiB in one request)."""
MEMORY_CAP = 200_000
"""Events kept in memory while the meter is away; older batches are re-read from disk."""
_ADOPT_EVERY_S = 5.0


def _batch(encoded_events: list[bytes]) -> bytes:
    """The meter's `/events` body for events already written as JSON."""
    return b'{"events":[' + b",".join(encoded_events) + b"]}"


class MeterSink:
    """A durable, batching, retrying client of the meter's ingest endpoint."""

    def __init__(
        self,
        meter_url: str,
        spool_dir: Path,
        flush_interval_ms: int = 50,
        *,
        internal_token: str,
        meter_socket: Path | None = None,
    ) -> None:
        self._meter_url = meter_url.rstrip("/")
        self._meter_socket = meter_socket  # on one machine the meter's Unix socket (Settings)
        # The meter takes events only from who holds the deployment's internal token.
        self._headers = {"Content-Type": "application/json", INTERNAL_TOKEN: internal_token}
        self._path = urllib.parse.urlsplit(self._meter_url).path + "/events"
        self._spool_dir = spool_dir
        self._interval = flush_interval_ms / 1000
        self._spool: UsageSpool | None = None
        self._journal: InflightJournal | None = None
        self._ready: collections.deque[Segment] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: PooledHttp | None = None
        self._closing = False

    @property
    def pending(self) -> int:
        """Events not yet committed by the meter."""
        active = self._spool.active_count if self._spool is not None else 0
        return active + sum(segment.count for segment in self._ready)

    @property
    def journal(self) -> InflightJournal:
        """This process's journal of paid calls in flight (beside its spool, same owner)."""
        assert self._journal is not None, "MeterSink.start() first"
        return self._journal

    def submit(self, event: UsageEvent) -> None:
        """Record an event durably (one write syscall); the meter gets it soon after."""
        assert self._spool is not None, "MeterSink.start() first"
        self._spool.append(event)
        if self._spool.active_count >= MAX_BATCH:
            self._wake.set()

    async def start(self) -> None:
        self._spool = UsageSpool(self._spool_dir)
        self._journal = InflightJournal(self._spool_dir, self._spool.owner)
        orphans = self._spool.adopt_orphans()
        if orphans:
            log.info("replaying %d usage events left by a previous translator", sum(s.count for s in orphans))
        self._ready.extend(orphans)
        self._http = PooledHttp(
            self._meter_url, unix_socket=self._meter_socket, connect_timeout_s=2, read_timeout_s=30
        )
        self._task = asyncio.create_task(self._run(), name="meter-sink")

    async def close(self, timeout: float = 10.0) -> None:
        """Ship what is queued (for up to `timeout` seconds); leave the rest on disk."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._journal is not None:
            if self._journal.open_calls:
                log.warning("%d calls still in flight are left to the next start", self._journal.open_calls)
            self._journal.close()
        if self._spool is not None:
            left = self.pending
            self._spool.close()
            if left:
                log.warning("%d usage events stay in the spool for the next start", left)
        if self._http is not None:
            self._http.close()

    async def _seal_active(self) -> None:
        assert self._spool is not None
        detached = self._spool.detach()
        if detached is not None:
            segment, fd = detached
            await asyncio.to_thread(UsageSpool.seal, fd)
            self._ready.append(segment)

    async def _run(self) -> None:
        """Ship until closed. Nothing may end this loop but `close`: while it stops, billing
        stops (the events wait in the spool; a failure is logged and retried)."""
        while True:
            try:
                await self._ship_until_closed()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("shipping usage events failed; retrying in 1 s (they wait in the spool)")
                await asyncio.sleep(1.0)

    async def _ship_until_closed(self) -> None:
        backoff = 0.1
        next_adoption = asyncio.get_running_loop().time() + _ADOPT_EVERY_S
        while True:
            if not self._closing:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval)
                self._wake.clear()
            await self._seal_active()
            while self._ready:
                segment = self._ready[0]
                if not await self._ship(segment.load()):
                    break
                assert self._spool is not None
                self._spool.delete(segment)
                self._ready.popleft()
                backoff = 0.1
            if self._ready:
                self._evict()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            elif self._closing and (self._spool is None or self._spool.active_count == 0):
                return
            now = asyncio.get_running_loop().time()
            if now >= next_adoption:
                # A sibling worker that died leaves segments behind; take them over.
                assert self._spool is not None
                self._ready.extend(self._spool.adopt_orphans())
                next_adoption = now + _ADOPT_EVERY_S

    def _evict(self) -> None:
        """Keep memory bounded while the meter is away: old batches stay only on disk."""
        in_memory = 0
        for segment in reversed(self._ready):
            if segment.lines is None:
                continue
            in_memory += segment.count
            if in_memory > MEMORY_CAP:
                segment.lines = None

    async def _ship(self, lines: list[bytes]) -> bool:
        """Post a batch of events (their JSON lines from the spool), in parts of at most
        MAX_BATCH_BYTES (the meter takes at most 64 MiB in one request); True once the meter
        committed every part."""
        part: list[bytes] = []
        size = 0
        for line in lines:
            if part and size + len(line) > MAX_BATCH_BYTES:
                if not await self._post(_batch(part), len(part)):
                    return False
                part, size = [], 0
            part.append(line)
            size += len(line) + 1
        return not part or await self._post(_batch(part), len(part))

    async def _post(self, body: bytes, count: int) -> bool:
        assert self._http is not None
        try:
            async with await self._http.post(self._path, self._headers, body) as r:
                await r.read()  # the whole answer, so the connection can carry the next batch
                if r.status == 200:
                    return True
                if r.status == 401:
                    log.error(
                        "meter refused a batch of %d events: it has another internal token "
                        "(BRPROXY_INTERNAL_TOKEN must be the same for every service); they wait",
                        count,
                    )
                    return False
                log.warning("meter refused a batch of %d events: HTTP %d", count, r.status)
        except HttpFailure as error:
            log.warning("meter unreachable (%s); %d events waiting", error, self.pending)
        return False
