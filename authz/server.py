"""The authz gRPC server: Envoy's ext_authz `Check`, plus the standard gRPC health service.

A synchronous gRPC server with a thread pool: measured here, it costs less CPU per check
than grpc.aio (the check itself is a hash and a dict lookup, so threads never wait long).
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
from concurrent import futures
from decimal import Decimal

import grpc
import orjson
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from authz.decision import Allow, Decision, decide
from authz.key_cache import KeyCache
from core.api_keys import hash_key
from core.errors import error_body
from core.internal_headers import KEY_ID, KEY_ROLE
from core.quota import billing_month
from core.settings import Settings

__all__ = ["AuthorizationService", "serve"]

log = logging.getLogger("authz")

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_JSON = base_pb2.HeaderValueOption(
    header=base_pb2.HeaderValue(key="content-type", value="application/json"), append_action=_OVERWRITE
)
# The caller's credential never travels further than the edge.
_CREDENTIAL_HEADERS = ["authorization", "x-api-key"]


class _MonthClock:
    """The current billing month, recomputed at most once a second (it is on the hot path)."""

    def __init__(self, tz: str) -> None:
        self._tz = tz
        self._until = 0.0
        self._month = billing_month(tz)

    def current(self) -> dt.date:
        now = time.monotonic()
        if now >= self._until:
            self._month = billing_month(self._tz)
            self._until = now + 1.0
        return self._month


class AuthorizationService(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    """Envoy's ext_authz API, deciding from the in-memory key cache."""

    def __init__(self, keys: KeyCache, settings: Settings) -> None:
        self._keys = keys
        admin_key = settings.admin_api_key.get_secret_value() if settings.admin_api_key else None
        self._bootstrap_hash = hash_key(admin_key) if admin_key else None
        self._month = _MonthClock(settings.billing_timezone)
        self._allowed: dict[tuple[int, str], external_auth_pb2.CheckResponse] = {}

    def Check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.ServicerContext
    ) -> external_auth_pb2.CheckResponse:
        http = request.attributes.request.http
        if not self._keys.ready:
            body = error_body(http.path, 503, "BRProxy is starting; try again in a moment.")
            return self._denied(503, orjson.dumps(body))
        headers = http.headers
        decision: Decision = decide(
            path=http.path,
            method=http.method,
            authorization=headers.get("authorization"),
            x_api_key=headers.get("x-api-key"),
            lookup=self._keys.lookup,
            bootstrap_hash=self._bootstrap_hash,
            current_month=self._month.current(),
            reserved=self._reserved,
        )
        if isinstance(decision, Allow):
            return self._allowed_response(decision)
        return self._denied(decision.status, decision.body)

    @staticmethod
    def _reserved(_key_id: int) -> Decimal:
        return Decimal(0)

    def _allowed_response(self, allow: Allow) -> external_auth_pb2.CheckResponse:
        # Responses are immutable per (key, role), so build each once.
        cache_key = (allow.key_id, allow.role)
        response = self._allowed.get(cache_key)
        if response is None:
            response = external_auth_pb2.CheckResponse(
                status=status_pb2.Status(code=code_pb2.OK),
                ok_response=external_auth_pb2.OkHttpResponse(
                    headers=[
                        base_pb2.HeaderValueOption(
                            header=base_pb2.HeaderValue(key=KEY_ID, value=str(allow.key_id)),
                            append_action=_OVERWRITE,
                        ),
                        base_pb2.HeaderValueOption(
                            header=base_pb2.HeaderValue(key=KEY_ROLE, value=allow.role),
                            append_action=_OVERWRITE,
                        ),
                    ],
                    headers_to_remove=_CREDENTIAL_HEADERS,
                ),
            )
            if len(self._allowed) > 100_000:
                self._allowed.clear()
            self._allowed[cache_key] = response
        return response

    @staticmethod
    def _denied(status: int, body: bytes) -> external_auth_pb2.CheckResponse:
        code = {
            401: code_pb2.UNAUTHENTICATED,
            403: code_pb2.PERMISSION_DENIED,
            429: code_pb2.RESOURCE_EXHAUSTED,
        }
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code.get(status, code_pb2.UNAVAILABLE)),
            denied_response=external_auth_pb2.DeniedHttpResponse(
                status=http_status_pb2.HttpStatus(code=status),
                headers=[_JSON],
                body=body.decode(),
            ),
        )


def serve(settings: Settings) -> None:
    """Run authz until SIGTERM/SIGINT."""
    keys = KeyCache(settings.require_database_url(), settings.key_resync_interval_s)
    keys.start()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="check"),
        options=[("grpc.so_reuseport", 0), ("grpc.max_concurrent_streams", 1000)],
    )
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(AuthorizationService(keys, settings), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"{settings.bind_host}:{settings.authz_port}"
    server.add_insecure_port(address)
    server.start()

    def report_serving() -> None:
        # Healthy only once every key is in memory: before that, every check would fail.
        keys.wait_ready(timeout=3600)
        health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        log.info("authz serving on %s with %d keys", address, len(keys))

    health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    threading.Thread(target=report_serving, daemon=True).start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=2).wait()
    keys.stop()
