"""`python -m meter`: records usage events to Postgres (uvicorn)."""

from __future__ import annotations

from core.asgi_serving import serve
from core.service_logging import configure_logging
from core.settings import Settings
from meter.server import MeterApp


def create_app() -> MeterApp:
    return MeterApp(Settings())


if __name__ == "__main__":
    settings = Settings()
    configure_logging("meter", settings.log_level)
    serve(
        "meter.__main__:create_app",
        host=settings.bind_host,
        port=settings.meter_port,
        socket_path=settings.service_socket("meter"),
    )
