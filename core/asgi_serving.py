"""How every BRProxy HTTP service runs under uvicorn: one place for the server's settings."""

from __future__ import annotations

from typing import Any

import uvicorn

__all__ = ["serve"]

KEEP_ALIVE_S = 75
"""Longer than Envoy's 60 s upstream idle timeout: Envoy, not the service, closes idle
connections, so Envoy never sends a request on a connection the service is closing."""


def serve(app_factory: str, *, host: str, port: int, workers: int = 1, **options: Any) -> None:
    """Run `app_factory` (an import string of a zero-argument app factory) until SIGTERM.

    An import string with factory=True lets worker processes (workers > 1) build their own
    app, each with its own connections. `options` adds or overrides uvicorn settings.
    """
    settings: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "proxy_headers": False,  # only Envoy talks to it; X-Forwarded-* is not for us to trust
        "server_header": False,
        "lifespan": "on",  # a failed start-up stops the process (the supervisor reports it)
        "log_level": "warning",
        "timeout_keep_alive": KEEP_ALIVE_S,
        "timeout_graceful_shutdown": 10,
    }
    settings.update(options)
    uvicorn.run(app_factory, **settings)
