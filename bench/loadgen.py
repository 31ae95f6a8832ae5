"""A closed-loop async load generator: C workers, each sending its next request when the last ends.

Bounded in count and time, loopback only. It records per request the total latency and,
for streams, the time to the first content token. A request counts as successful only when
its answer holds the simulator's text (`Request.first_token_marker`); anything else is an error,
with up to three distinct samples kept for the report.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import yarl

__all__ = ["LoadResult", "Request", "percentile", "run_load"]


@dataclass(frozen=True)
class Request:
    url: yarl.URL
    body: bytes
    headers: dict[str, str]
    stream: bool
    first_token_marker: bytes
    """Bytes that appear in the response at the first content token (for TTFT and success)."""


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def _record_error(result: LoadResult, sample: str) -> None:
    result.errors += 1
    # Up to three different samples: three copies of the same failure say less than one.
    if len(result.error_samples) < 3 and sample not in result.error_samples:
        result.error_samples.append(sample)


async def _one(session: aiohttp.ClientSession, request: Request, result: LoadResult) -> None:
    started = time.perf_counter()
    first: float | None = None
    marker = request.first_token_marker
    try:
        async with session.post(request.url, data=request.body, headers=request.headers) as response:
            if response.status != 200:
                body = await response.read()
                _record_error(result, f"HTTP {response.status}: {body[:300]!r}")
                return
            if request.stream:
                # The marker may straddle two chunks: look at the end of the last one too.
                head = b""
                tail = b""
                async for chunk in response.content.iter_any():
                    if first is None:
                        if marker in tail + chunk:
                            first = time.perf_counter()
                        else:
                            head = head or chunk[:300]
                            tail = chunk[-len(marker) :]
                answered = first is not None
            else:
                head = await response.read()
                answered = marker in head
            # A 200 is a success only if it carries the simulator's answer: a proxy that
            # streams an error event (or an empty answer) with status 200 must not look fast.
            if not answered:
                _record_error(result, f"HTTP 200 without the simulator's answer: {head[:300]!r}")
                return
    except (aiohttp.ClientError, TimeoutError) as error:
        _record_error(result, f"{type(error).__name__}: {error}"[:300])
        return
    done = time.perf_counter()
    result.requests += 1
    result.latencies_ms.append((done - started) * 1000)
    if first is not None:
        result.ttft_ms.append((first - started) * 1000)


async def run_load(
    make_request: Callable[[int], Request],
    concurrency: int,
    *,
    max_requests: int,
    max_seconds: float,
    warmup: int = 50,
    ca_file: str | None = None,
    spread_s: float = 0.0,
) -> LoadResult:
    """Run until `max_requests` completed or `max_seconds` passed, after `warmup` requests.

    `spread_s` staggers the clients' first requests evenly over that many seconds. Why: with
    a simulator whose latency is the same for every request, clients that start together
    stay in lock-step for the whole run, and every proxy then sees C requests arrive in the
    same instant, C times per cycle, which independent users never do. Staggered by one
    latency period they arrive spread out, as they do in production, where answers take
    different times.
    """
    context: ssl.SSLContext | bool = False
    if ca_file:
        context = ssl.create_default_context(cafile=ca_file)
        context.check_hostname = False
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120), skip_auto_headers=("User-Agent",)
    ) as session:
        scratch = LoadResult()
        for i in range(warmup):
            await _one(session, make_request(i), scratch)
        result = LoadResult()
        counter = 0
        deadline = time.perf_counter() + max_seconds

        async def worker(number: int) -> None:
            nonlocal counter
            if spread_s:
                await asyncio.sleep(spread_s * number / concurrency)
            while counter < max_requests and time.perf_counter() < deadline:
                counter += 1
                await _one(session, make_request(counter), result)

        started = time.perf_counter()
        await asyncio.gather(*(worker(number) for number in range(concurrency)))
        result.seconds = time.perf_counter() - started
        return result
