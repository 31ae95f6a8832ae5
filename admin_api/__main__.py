"""`python -m admin_api`: serve the admin API with uvicorn on its socket (or `bind_host:admin_port`)."""

from __future__ import annotations

import copy
from typing import Any

from uvicorn.config import LOGGING_CONFIG

from core.asgi_serving import serve
from core.internal_auth import InternalToken
from core.settings import Settings


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging, extended to the admin_api logger (its 500s), at the configured level."""
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["admin_api"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def main() -> None:
    settings = Settings()
    settings.require_database_url()  # fail now with a clear message, not in every worker
    InternalToken.from_settings(settings)
    serve(
        "admin_api.app:create_app",
        host=settings.bind_host,
        port=settings.admin_port,
        socket_path=settings.service_socket("admin"),
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        log_config=_log_config(settings.log_level),
    )


if __name__ == "__main__":
    main()
