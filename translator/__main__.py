"""`python -m translator`: the OpenAI/Anthropic → Bedrock translator (uvicorn)."""

from __future__ import annotations

from core.asgi_serving import serve
from core.internal_auth import InternalToken
from core.service_logging import configure_logging
from core.settings import Settings
from translator.server import TranslatorApp


def create_app() -> TranslatorApp:
    """Factory for uvicorn (each worker process builds its own app)."""
    return TranslatorApp(Settings())


if __name__ == "__main__":
    settings = Settings()
    configure_logging("translator", settings.log_level)
    InternalToken.from_settings(settings)  # fail now with a clear message, not in every worker
    serve(
        "translator.__main__:create_app",
        host=settings.bind_host,
        port=settings.translator_port,
        socket_path=settings.service_socket("translator"),
        workers=settings.workers,
    )
