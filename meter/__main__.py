"""`python -m meter`: records usage events to Postgres (uvicorn)."""

from __future__ import annotations

import uvicorn

from core.service_logging import configure_logging
from core.settings import Settings
from meter.server import MeterApp


def create_app() -> MeterApp:
    return MeterApp(Settings())


if __name__ == "__main__":
    settings = Settings()
    configure_logging("meter", settings.log_level)
    uvicorn.run(
        "meter.__main__:create_app",
        factory=True,
        host=settings.bind_host,
        port=settings.meter_port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        proxy_headers=False,  # only Envoy talks to it; X-Forwarded-* is not for us to trust
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
