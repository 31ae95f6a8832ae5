"""The translator's HTTP server: a small ASGI app on uvicorn (uvloop, httptools).

It is plain ASGI rather than a framework because it sits on every request's path and has
few routes. Each route is one endpoint module (`chat_completions.py`, …) that does the
I/O around a pure translator (`openai_bedrock.py`, …). Envoy has already authenticated
the caller: `x-brproxy-key-id` names the key. That header is believed only on a request that
carries the deployment's internal token (core/internal_auth.py), i.e. came through the edge.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from core.catalogue import CATALOGUE, Catalogue
from core.catalogue_store import CatalogueFollower
from core.errors import error_body
from core.heap import freeze_startup_heap
from core.internal_auth import InternalToken, log_refusal
from core.internal_headers import INTERNAL_TOKEN
from core.settings import Settings, database_url_from_env
from translator.asgi import Receive, Reply, Request, Scope, Send, send_json
from translator.bedrock_client import BedrockRuntime
from translator.chat_completions import chat_completions
from translator.embeddings_endpoint import embeddings
from translator.gateway import Gateway
from translator.messages_endpoint import count_tokens, messages
from translator.meter_sink import MeterSink
from translator.models_endpoint import list_models

__all__ = ["ROUTES", "TranslatorApp"]

log = logging.getLogger("translator")

Endpoint = Callable[[Gateway, Request], Awaitable[None]]

ROUTES: dict[str, tuple[str, Endpoint]] = {
    "/v1/chat/completions": ("POST", chat_completions),
    "/v1/embeddings": ("POST", embeddings),
    "/v1/messages": ("POST", messages),
    "/v1/messages/count_tokens": ("POST", count_tokens),
    "/v1/models": ("GET", list_models),
}
"""Path → (method, endpoint)."""

_INTERNAL_TOKEN = INTERNAL_TOKEN.encode()
_NOT_FROM_THE_EDGE = "This service only answers requests that come through the gateway."


class TranslatorApp:
    """ASGI application: OpenAI- and Anthropic-compatible endpoints backed by Bedrock."""

    def __init__(self, settings: Settings, catalogue: Catalogue = CATALOGUE) -> None:
        self.settings = settings
        self.internal_token = InternalToken.from_settings(settings)
        self.models = CatalogueFollower(settings.database_url or database_url_from_env(), catalogue)
        self.meter = MeterSink(
            settings.meter_url,
            settings.spool_dir / "translator",
            settings.meter_flush_interval_ms,
            internal_token=self.internal_token.value,
            meter_socket=settings.service_socket("meter"),
        )
        self.gateway: Gateway | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        headers: dict[bytes, bytes] = dict(scope["headers"])
        refusal = self.internal_token.refusal(headers.get(_INTERNAL_TOKEN))
        if path == "/health":  # open to probes; the backlog only for a holder of the token
            extra = {} if refusal else {"pending_usage_events": self.meter.pending}
            await send_json(send, 200, {"status": "ok", **extra})
            return
        if refusal is not None:
            log_refusal(log, refusal, scope["method"], path, headers.get(b"x-request-id"))
            await send_json(send, 401, error_body(path, 401, _NOT_FROM_THE_EDGE))
            return
        request = Request(scope, receive, send, headers)
        try:
            route = ROUTES.get(path)
            if route is None:
                raise Reply.error(path, 404, f"Unknown route {scope['method']} {path}.", code="unknown_url")
            method, endpoint = route
            if scope["method"] != method:
                raise Reply.error(path, 405, f"Use {method} for {path}.", code="method_not_allowed")
            assert self.gateway is not None
            try:
                self.gateway.track(request)
                await endpoint(self.gateway, request)
            finally:
                self.gateway.release_unbilled(request)
        except Reply as reply:
            await send_json(send, reply.status, reply.body, reply.headers)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    bedrock = BedrockRuntime.from_environment()
                    await bedrock.__aenter__()
                    await self.meter.start()
                    await self.models.start()
                except Exception as error:
                    await send(
                        {"type": "lifespan.startup.failed", "message": f"{type(error).__name__}: {error}"}
                    )
                    return
                self.gateway = Gateway(self.settings, self.models, bedrock, self.meter)
                log.info("Bedrock endpoint %s (region %s)", bedrock.endpoint_url, bedrock.region)
                if bedrock.proxy_address is not None:
                    log.info("Bedrock calls go through the proxy %s", bedrock.proxy_address)
                freeze_startup_heap()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.models.close()
                await self.meter.close()
                if self.gateway is not None:
                    await self.gateway.bedrock.__aexit__(None, None, None)
                await send({"type": "lifespan.shutdown.complete"})
                return
