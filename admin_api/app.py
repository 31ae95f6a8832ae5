"""The admin API application: lifespan (database pool, health-check clients) and error mapping.

Every answer is an envelope with a truthful status: 400 for bad input (naming the field),
401/403 for the caller, 404 for unknown ids and routes, 500 "internal error" for anything
unforeseen. A refusal is logged once, on one line: method, path, Envoy's request id, status
and the message the client got (which names fields, never their values). The 500 path logs
the exception with the method and path only: never a request body, a header or a key.

Only requests that carry the deployment's internal token (core/internal_auth.py), i.e. came
through the edge, get further than a 401: the caller headers mean nothing without it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg
import grpc
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from admin_api.envelope import ApiError, EnvelopeResponse, error
from admin_api.routes import routers
from admin_api.routes.health import HealthChecker, service_client
from core.heap import freeze_startup_heap
from core.internal_auth import InternalToken, log_refusal
from core.internal_headers import INTERNAL_TOKEN
from core.settings import Settings

__all__ = ["create_app", "validation_message"]

logger = logging.getLogger("admin_api")

_POOL_MIN_SIZE = 1
_POOL_MAX_SIZE = 10
_PARAM_SOURCES = frozenset({"body", "query", "path", "header", "cookie"})
REQUEST_ID_HEADER = "x-request-id"
"""Set by Envoy on every request (and returned to the client): what ties a log line to a call."""
_INTERNAL_TOKEN = INTERNAL_TOKEN.encode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    # threads.whole_prompt is jsonb: hand it to the client as JSON, not as a string of JSON.
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda value: orjson.dumps(value).decode(),
        decoder=orjson.loads,
    )


def validation_message(errors: Iterable[Mapping[str, Any]]) -> str:
    """One line naming each offending field: `month_quota: must not be negative`."""
    lines: list[str] = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ())]
        source = loc.pop(0) if loc and loc[0] in _PARAM_SOURCES else "body"
        if err.get("type") == "json_invalid":
            line = "body: malformed JSON"
        else:
            line = f"{'.'.join(loc) or source}: {err.get('msg', 'invalid')}"
        if line not in lines:
            lines.append(line)
    return "; ".join(lines) or "invalid request"


_LOGGED_CHARS = 300


def _loggable(text: str) -> str:
    """Client-chosen text as one log line may hold it: escaped (no newline, NUL or
    surrogate gets through) and bounded."""
    escaped = repr(text)[1:-1]
    return escaped if len(escaped) <= _LOGGED_CHARS else escaped[:_LOGGED_CHARS] + "…"


def _refused(request: Request, status: int, message: str) -> EnvelopeResponse:
    request_id = request.headers.get(REQUEST_ID_HEADER)
    logger.log(
        logging.ERROR if status >= 500 else logging.INFO,
        "refused %s %s (request %s): %d %s",
        request.method,
        _loggable(request.url.path),
        _loggable(request_id) if request_id else "-",
        status,
        _loggable(message),
    )
    return error(status, message)


async def _api_error(request: Request, exc: Exception) -> EnvelopeResponse:
    assert isinstance(exc, ApiError)
    return _refused(request, exc.status_code, exc.message)


async def _validation_error(request: Request, exc: Exception) -> EnvelopeResponse:
    assert isinstance(exc, RequestValidationError)
    return _refused(request, 400, validation_message(exc.errors()))


async def _http_error(request: Request, exc: Exception) -> EnvelopeResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message = "no such route"
    elif exc.status_code == 405:
        message = "method not allowed"
    else:
        message = str(exc.detail)
    response = _refused(request, exc.status_code, message)
    response.headers.update(exc.headers or {})  # e.g. Allow on a 405
    return response


class _InternalErrors:
    """Turns an unforeseen exception into a 500 envelope, logged once.

    It sits inside Starlette's ServerErrorMiddleware, which would re-raise after answering
    (so the server logs the error a second time, with its own message).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            logger.exception("internal error on %s %s", scope["method"], scope["path"])
            if started:
                raise  # too late for an envelope; the server aborts the response
            await error(500, "internal error")(scope, receive, send)


class _FromTheEdgeOnly:
    """Refuses, before anything else runs, every request without the internal token.

    `/health` stays open to probes: it changes nothing and says what the public `/health`
    says. Everything else, unknown routes included, is a 401 envelope, logged once.
    """

    def __init__(self, app: ASGIApp, internal_token: InternalToken) -> None:
        self.app = app
        self.internal_token = internal_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or (scope["type"] == "http" and scope["path"] == "/health"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        refusal = self.internal_token.refusal(headers.get(_INTERNAL_TOKEN))
        if refusal is None:
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "WEBSOCKET")
        log_refusal(logger, refusal, method, scope["path"], headers.get(b"x-request-id"))
        if scope["type"] == "websocket":  # refused before the handshake: the server answers 403
            await send({"type": "websocket.close", "code": 1008})
            return
        response = error(401, "this service only answers requests that come through the gateway")
        await response(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The admin API; without `settings`, configured from the `BRPROXY_*` environment."""
    settings = settings if settings is not None else Settings()
    internal_token = InternalToken.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            pool = await asyncpg.create_pool(
                settings.require_database_url(),
                min_size=_POOL_MIN_SIZE,
                max_size=_POOL_MAX_SIZE,
                init=_init_connection,
            )
            stack.push_async_callback(pool.close)
            # Internal calls never go through an HTTP proxy from the environment.
            translator = service_client(settings, "translator")
            stack.push_async_callback(translator.aclose)
            meter = service_client(settings, "meter")
            stack.push_async_callback(meter.aclose)
            authz = grpc.aio.insecure_channel(
                settings.authz_grpc_target, options=[("grpc.enable_http_proxy", 0)]
            )
            stack.push_async_callback(authz.close)
            app.state.pool = pool
            app.state.health = HealthChecker(pool, authz, translator=translator, meter=meter)
            freeze_startup_heap()
            yield

    app = FastAPI(
        title="BRProxy admin API",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        default_response_class=EnvelopeResponse,
        # No redirect for a trailing slash: behind Envoy, a Location built from what the
        # admin API sees would name the internal scheme and address. It is a 404 instead.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.add_middleware(_InternalErrors)
    app.add_middleware(_FromTheEdgeOnly, internal_token=internal_token)  # the outermost: runs first
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for router in routers:
        app.include_router(router)
    return app
