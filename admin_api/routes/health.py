"""/health: is the admin API and everything behind the gateway up? No auth.

Four parts are checked concurrently, each bounded by its own 1 s timeout: the database
(`SELECT 1`), authz (the standard gRPC health service), the translator and the meter
(`GET /health` → 200), each where Settings says it is (a Unix socket on one machine).
The verdict is cached for 250 ms and computed by one request at a time, so a flood of probes
costs at most four checks per 250 ms per worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import grpc
import httpx
from fastapi import APIRouter, Request
from grpc_health.v1 import health_pb2, health_pb2_grpc

from admin_api.envelope import EnvelopeResponse
from admin_api.inputs import AdminRoute
from core.settings import Service, Settings

__all__ = ["HealthChecker", "router", "service_client"]

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 1.0
CACHE_TTL_S = 0.25

router = APIRouter(route_class=AdminRoute)


def service_client(settings: Settings, service: Service) -> httpx.AsyncClient:
    """An HTTP client of one internal service, at its Unix socket or its URL (Settings), never
    through a proxy from the environment."""
    socket = settings.service_socket(service)
    transport = None if socket is None else httpx.AsyncHTTPTransport(uds=str(socket))
    return httpx.AsyncClient(
        base_url=settings.service_url(service), transport=transport, timeout=CHECK_TIMEOUT_S, trust_env=False
    )


class HealthChecker:
    """Checks the parts the admin API depends on; owns nothing, closes nothing."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        authz: grpc.aio.Channel,
        *,
        translator: httpx.AsyncClient,
        meter: httpx.AsyncClient,
    ) -> None:
        self._pool = pool
        self._authz = health_pb2_grpc.HealthStub(authz)
        self._translator = translator
        self._meter = meter
        self._lock = asyncio.Lock()
        self._cached: tuple[float, dict[str, str]] | None = None

    async def parts(self) -> dict[str, str]:
        """Each part's state: "ok" or a short reason. Fresh within the last 250 ms."""
        async with self._lock:
            # Requests that queued behind a running check find its fresh result here.
            if self._cached is not None and time.monotonic() - self._cached[0] < CACHE_TTL_S:
                return self._cached[1]
            checks: dict[str, Callable[[], Awaitable[str]]] = {
                "database": self._database,
                "authz": self._authz_serving,
                "translator": lambda: self._http_ok(self._translator),
                "meter": lambda: self._http_ok(self._meter),
            }
            results = await asyncio.gather(*(_bounded(check) for check in checks.values()))
            parts = dict(zip(checks, results, strict=True))
            self._cached = (time.monotonic(), parts)
            return parts

    async def _database(self) -> str:
        await self._pool.fetchval("SELECT 1")
        return "ok"

    async def _authz_serving(self) -> str:
        request = health_pb2.HealthCheckRequest(service="")
        reply = await self._authz.Check(request, timeout=CHECK_TIMEOUT_S)
        if reply.status == health_pb2.HealthCheckResponse.SERVING:
            return "ok"
        return "not serving"

    async def _http_ok(self, service: httpx.AsyncClient) -> str:
        response = await service.get("/health")
        return "ok" if response.status_code == 200 else f"status {response.status_code}"


async def _bounded(check: Callable[[], Awaitable[str]]) -> str:
    """Run one check under the timeout; any failure becomes a reason, never an exception."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            return await check()
    except TimeoutError:
        return "timeout"
    except grpc.aio.AioRpcError as exc:
        return "timeout" if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED else "unreachable"
    except (OSError, httpx.HTTPError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return "unreachable"
    except Exception:
        # A health probe reports, it does not fail: an unforeseen error marks the part down.
        logger.debug("health check raised", exc_info=True)
        return "error"


@router.get("/health")
async def health(request: Request) -> EnvelopeResponse:
    checker: HealthChecker = request.app.state.health
    parts = await checker.parts()
    healthy = all(state == "ok" for state in parts.values())
    body: dict[str, Any] = {
        "success": healthy,
        "data": {"status": "ok" if healthy else "unavailable", "parts": parts},
    }
    return EnvelopeResponse(body, status_code=200 if healthy else 503, headers={"cache-control": "no-store"})
