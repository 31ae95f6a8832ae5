"""`python -m translator`: the OpenAI/Anthropic → Bedrock translator (uvicorn)."""

from __future__ import annotations

import uvicorn

from core.service_logging import configure_logging
from core.settings import Settings
from translator.server import TranslatorApp


def create_app() -> TranslatorApp:
    """Factory for uvicorn (each worker process builds its own app)."""
    return TranslatorApp(Settings())


if __name__ == "__main__":
    settings = Settings()
    configure_logging("translator", settings.log_level)
    uvicorn.run(
        "translator.__main__:create_app",
        factory=True,
        host=settings.bind_host,
        port=settings.translator_port,
        workers=settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        proxy_headers=False,  # only Envoy talks to it; X-Forwarded-* is not for us to trust
        lifespan="on",
        log_level="warning",
        timeout_keep_alive=75,
        timeout_graceful_shutdown=10,
    )
