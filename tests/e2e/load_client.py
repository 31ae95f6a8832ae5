"""A bounded async load of chat requests for the fault tests, remembering what each client saw."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Outcome:
    """One request as its client saw it."""

    status: int
    request_id: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


@dataclass
class Load:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def ok(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == 200 and o.error is None]

    def seen_tokens(self) -> tuple[int, int]:
        return sum(o.prompt_tokens for o in self.ok), sum(o.completion_tokens for o in self.ok)


async def _one(client: httpx.AsyncClient, body: dict[str, Any]) -> Outcome:
    try:
        if body.get("stream"):
            async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                usage = None
                error = None
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        chunk = httpx.Response(200, content=line[6:]).json()
                        if "error" in chunk:
                            error = str(chunk["error"])
                        if chunk.get("usage"):
                            usage = chunk["usage"]
                rid = response.headers.get("x-request-id")
                if response.status_code != 200 or usage is None:
                    return Outcome(response.status_code, rid, error=error or "no usage")
                return Outcome(200, rid, usage["prompt_tokens"], usage["completion_tokens"], error)
        response = await client.post("/v1/chat/completions", json=body)
        rid = response.headers.get("x-request-id")
        if response.status_code != 200:
            return Outcome(response.status_code, rid, error=response.text[:200])
        usage = response.json()["usage"]
        return Outcome(200, rid, usage["prompt_tokens"], usage["completion_tokens"])
    except httpx.HTTPError as error:
        return Outcome(0, None, error=type(error).__name__)


async def run_load(
    base_url: str,
    verify: ssl.SSLContext | bool,
    key: str,
    bodies: list[dict[str, Any]],
    concurrency: int,
    during: Callable[[int], Awaitable[None]] | None = None,
) -> Load:
    """Send `bodies` with `concurrency` workers; `during(n)` runs after n completions (once)."""
    load = Load()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    trigger_at = len(bodies) // 3
    triggered: list[asyncio.Task[None]] = []

    async with httpx.AsyncClient(
        base_url=base_url, verify=verify, timeout=60, headers={"authorization": f"Bearer {key}"}
    ) as client:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                load.outcomes.append(await _one(client, body))
                if during is not None and not triggered and len(load.outcomes) >= trigger_at:
                    triggered.append(asyncio.create_task(during(len(load.outcomes))))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        for task in triggered:
            await task
    return load


def chat_body(i: int, *, tokens: int = 8, stream: bool = False, max_tokens: int = 64) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-3-haiku",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": f"request {i} [[sim:tokens={tokens}]]"}],
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body
