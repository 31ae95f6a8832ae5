"""/health (admin_api/routes/health.py): four parts, concurrent checks, a 250 ms cache, each
part reached over TCP (Kubernetes, Compose) or at its Unix socket (one machine)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
from fastapi import FastAPI
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from admin_api import create_app
from admin_api.routes.health import CACHE_TTL_S
from core.settings import Settings


class FakeHttpHealth:
    """A bare HTTP server answering every request with `status` (or never, if it hangs)."""

    def __init__(self, status: int = 200, *, hang: bool = False, socket: Path | None = None) -> None:
        self.status = status
        self.hang = hang
        self.socket = socket
        self.hosts: list[bytes] = []
        self.requests = 0
        self._release = asyncio.Event()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            self.hosts += [
                line[5:].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"host:")
            ]
            if self.hang:
                await self._release.wait()
            else:
                writer.write(
                    f"HTTP/1.1 {self.status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> FakeHttpHealth:
        if self.socket is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        else:
            self._server = await asyncio.start_unix_server(self._handle, str(self.socket))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._release.set()
        self._server.close()
        await self._server.wait_closed()
        await asyncio.sleep(0.01)  # let released handlers close their sockets


@asynccontextmanager
async def fake_authz(
    status: int = health_pb2.HealthCheckResponse.SERVING, *, socket: Path | None = None
) -> AsyncIterator[int]:
    """A gRPC server with the standard health service reporting `status` for service ""."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0" if socket is None else f"unix:{socket}")
    await server.start()
    await servicer.set("", status)
    try:
        yield port
    finally:
        await server.stop(None)


@asynccontextmanager
async def serving(settings: Settings, **ports: Any) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(settings.model_copy(update=ports))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://admin-api") as client,
    ):
        yield client


def parts_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["success"] is (response.status_code == 200)
    assert body["data"]["status"] == ("ok" if response.status_code == 200 else "unavailable")
    parts: dict[str, Any] = body["data"]["parts"]
    return parts


async def test_parts_that_are_down_make_it_503(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")  # no caller headers: /health needs no auth

    assert response.status_code == 503
    assert parts_of(response) == {
        "database": "ok",
        "authz": "unreachable",
        "translator": "unreachable",
        "meter": "unreachable",
    }
    assert response.headers["cache-control"] == "no-store"


async def test_all_parts_up_is_200(settings: Settings) -> None:
    async with (
        fake_authz() as authz_port,
        FakeHttpHealth() as translator,
        FakeHttpHealth() as meter,
        serving(
            settings, authz_port=authz_port, translator_port=translator.port, meter_port=meter.port
        ) as client,
    ):
        response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "data": {
            "status": "ok",
            "parts": {"database": "ok", "authz": "ok", "translator": "ok", "meter": "ok"},
        },
    }


async def test_each_failure_is_named(settings: Settings) -> None:
    async with (
        fake_authz(health_pb2.HealthCheckResponse.NOT_SERVING) as authz_port,
        FakeHttpHealth(500) as translator,
        FakeHttpHealth(hang=True) as meter,
        serving(
            settings, authz_port=authz_port, translator_port=translator.port, meter_port=meter.port
        ) as client,
    ):
        started = time.monotonic()
        response = await client.get("/health")
        elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert parts_of(response) == {
        "database": "ok",
        "authz": "not serving",
        "translator": "status 500",
        "meter": "timeout",
    }
    assert elapsed < 1.8  # the parts are checked concurrently, each within its 1 s timeout


async def test_a_flood_of_probes_checks_once_per_ttl(settings: Settings) -> None:
    async with (
        fake_authz() as authz_port,
        FakeHttpHealth() as translator,
        FakeHttpHealth() as meter,
        serving(
            settings, authz_port=authz_port, translator_port=translator.port, meter_port=meter.port
        ) as client,
    ):
        flood = await asyncio.gather(*(client.get("/health") for _ in range(50)))
        after_flood = (translator.requests, meter.requests)
        await asyncio.sleep(CACHE_TTL_S + 0.05)
        later = await client.get("/health")

    assert {r.status_code for r in flood} == {200}
    assert after_flood == (1, 1)
    assert later.status_code == 200
    assert (translator.requests, meter.requests) == (2, 2)


async def test_on_one_machine_each_part_is_checked_at_its_unix_socket(
    settings: Settings, tmp_path: Path
) -> None:
    """With a socket dir (`brproxy up`), the parts are reached there, not at their ports (which
    here nobody serves: reached, they would be "unreachable")."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    async with (
        fake_authz(socket=run / "authz.sock"),
        FakeHttpHealth(socket=run / "translator.sock") as translator,
        FakeHttpHealth(503, socket=run / "meter.sock") as meter,
        serving(settings, socket_dir=run) as client,
    ):
        response = await client.get("/health")

    assert response.status_code == 503
    assert parts_of(response) == {"database": "ok", "authz": "ok", "translator": "ok", "meter": "status 503"}
    assert (translator.hosts, meter.hosts) == ([b"translator"], [b"meter"])

    async with serving(settings, socket_dir=tmp_path / "empty") as client:  # nothing listens there
        parts = parts_of(await client.get("/health"))
    assert parts == {
        "database": "ok",
        "authz": "unreachable",
        "translator": "unreachable",
        "meter": "unreachable",
    }
