"""How every BRProxy HTTP service runs under uvicorn: one place for the server's settings."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.unix_sockets import bind_listener, remove_listener, socket_identity

__all__ = ["serve"]

KEEP_ALIVE_S = 75
"""Longer than Envoy's 60 s upstream idle timeout: Envoy, not the service, closes idle
connections, so Envoy never sends a request on a connection the service is closing."""


class _CoalescingTransport:
    """A transport whose writes made in one event-loop turn leave in one send().

    Why: uvicorn writes a response's head as soon as the app starts it, and the body in a
    second write, so every answer cost two system calls here and two reads (and wake-ups)
    in Envoy. Deferred to the end of the turn, they go out together; so do the frames a
    stream writes in one go. Nothing waits longer than the rest of the current turn.
    Everything else is the real transport's.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()  # what was written goes out before the close
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a `_CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport))  # type: ignore[arg-type]


def serve(
    app_factory: str,
    *,
    host: str,
    port: int,
    socket_path: Path | None = None,
    workers: int = 1,
    **options: Any,
) -> None:
    """Run `app_factory` (an import string of a zero-argument app factory) until SIGTERM.

    An import string with factory=True lets worker processes (workers > 1) build their own
    app, each with its own connections. `options` adds or overrides uvicorn settings.
    With `socket_path` (Settings.service_socket) it listens there, not on host:port.
    """
    settings: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "loop": "uvloop",
        "http": CoalescingHttpToolsProtocol,
        "access_log": False,
        "proxy_headers": False,  # only Envoy talks to it; X-Forwarded-* is not for us to trust
        "server_header": False,
        "lifespan": "on",  # a failed start-up stops the process (the supervisor reports it)
        "log_level": "warning",
        "timeout_keep_alive": KEEP_ALIVE_S,
        "timeout_graceful_shutdown": 10,
    }
    settings.update(options)
    if socket_path is None:
        uvicorn.run(app_factory, **settings)
        return
    # Bound here, not by uvicorn's `uds`: uvicorn makes its socket 0666 (or keeps the mode of
    # whatever file was at the path), and only a socket file is ours to replace.
    listener = bind_listener(socket_path)
    identity = socket_identity(socket_path)
    del settings["host"], settings["port"]
    try:
        uvicorn.run(app_factory, fd=listener.fileno(), **settings)
    finally:
        listener.close()
        remove_listener(socket_path, identity)
