"""The authz gRPC server: Envoy's ext_authz `Check`, plus the standard gRPC health service.

A synchronous gRPC server with a thread pool: measured here, it costs less CPU per check
than grpc.aio (the check itself is a hash and a dict lookup, so threads never wait long).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import signal
import threading
import time
from concurrent import futures
from decimal import Decimal
from typing import Any

import asyncpg
import grpc
import orjson
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from authz.budget import Ledger
from authz.budget_store import BudgetStore
from authz.decision import Allow, Decision, KeyRecord, decide
from authz.estimate import admission_for
from authz.key_cache import KeyCache
from authz.rate_limit import RateLimiter
from core.admission import MAX_BODY_BYTES, Admission, BodyRefused
from core.api_keys import hash_key
from core.errors import error_body
from core.heap import freeze_startup_heap
from core.internal_auth import InternalToken, log_refusal
from core.internal_headers import ADMITTED, INTERNAL_TOKEN, KEY_ID, KEY_ROLE
from core.quota import billing_month, headroom, spends_money
from core.settings import Settings
from core.unix_sockets import prepare_to_listen, restrict_to_owner

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

    def __init__(
        self, keys: KeyCache, settings: Settings, store: BudgetStore, *, internal_token: InternalToken
    ) -> None:
        self._internal_token = internal_token
        self._keys = keys
        self._store = store
        admin_key = settings.admin_api_key.get_secret_value() if settings.admin_api_key else None
        self._bootstrap_hash = hash_key(admin_key) if admin_key else None
        self._month = _MonthClock(settings.billing_timezone)
        self._allowed: dict[tuple[int, str], external_auth_pb2.CheckResponse] = {}

    def Check(
        self, request: external_auth_pb2.CheckRequest, context: grpc.ServicerContext
    ) -> external_auth_pb2.CheckResponse:
        http = request.attributes.request.http
        # Only Envoy may ask: to anyone else, Check would tell valid keys apart and spend them.
        refusal = self._internal_token.refusal(_internal_token_of(context))
        if refusal is not None:
            return self._not_from_the_edge(http, refusal)
        if not self._keys.ready or not self._store.ready:
            return self._unavailable("BRProxy is starting; try again in a moment.")
        headers = http.headers
        decision: Decision = decide(
            path=http.path,
            method=http.method,
            authorization=headers.get("authorization"),
            x_api_key=headers.get("x-api-key"),
            lookup=self._keys.lookup,
            bootstrap_hash=self._bootstrap_hash,
            current_month=self._month.current(),
            reserved=self._store.ledger.reserved,
        )
        if not isinstance(decision, Allow):
            return self._denied(decision.status, decision.body)
        if decision.record is not None and spends_money(http.method, http.path):
            admitted = self._admit_paid(http, decision.record)
            if isinstance(admitted, external_auth_pb2.CheckResponse):
                return admitted
            return self._admitted_response(decision, admitted)
        return self._allowed_response(decision)

    def _admit_paid(self, http: Any, record: KeyRecord) -> Admission | external_auth_pb2.CheckResponse:
        """Rate limit, then reserve the call's worst-case cost: the admission, or a refusal."""
        path = http.path.split("?", 1)[0]
        # Envoy's x-request-id (set before any filter runs) is also the usage event's id.
        request_id = http.headers.get("x-request-id") or http.id
        try:
            if record.rate_limit_rpm > 0:
                retry_after = self._store.take_permit(record.id, record.rate_limit_rpm, time.time())
                if retry_after is not None:
                    body = error_body(
                        path, 429, f"Rate limit of {record.rate_limit_rpm} requests per minute reached.",
                        code="rate_limit_exceeded",
                    )  # fmt: skip
                    return self._denied(429, orjson.dumps(body), retry_after)
            # The whole body, as the translator will read it (the edge buffers it for us).
            try:
                admission = admission_for(path, http.raw_body, self._store.models.catalogue)
            except BodyRefused as refusal:
                log.info(
                    "refused %s for key %d: %d %s (request %s)",
                    path, record.id, refusal.status, refusal.message[:300], request_id,
                )  # fmt: skip
                body = error_body(
                    path, refusal.status, refusal.message, code=refusal.code, param=refusal.param
                )
                return self._denied(refusal.status, orjson.dumps(body))
            cost = admission.cost
            if not self._store.reserve(record.id, request_id, cost, self._month.current()):
                left = headroom(
                    record.month_quota,
                    record.month_fee,
                    record.fee_month,
                    record.balance,
                    self._month.current(),
                ) - self._store.ledger.reserved(record.id)
                message = (
                    f"Please recharge: this request may cost up to ${cost:.6f} and this key has "
                    f"${max(left, Decimal(0)):.6f} left (lower max_tokens, or recharge)."
                )
                body = error_body(path, 429, message, code="insufficient_quota")
                return self._denied(429, orjson.dumps(body))
        except (concurrent.futures.TimeoutError, OSError, asyncpg.PostgresError) as error:
            # Fail closed: without Postgres nobody can check the money.
            log.warning("budget check failed (%s); refusing", type(error).__name__)
            return self._unavailable("Billing is unavailable for a moment; try again.")
        return admission

    def _admitted_response(self, allow: Allow, admission: Admission) -> external_auth_pb2.CheckResponse:
        """An admitted model call: the caller, and what its reservation covers (per request)."""
        cached = self._allowed_response(allow)
        response = external_auth_pb2.CheckResponse()
        response.CopyFrom(cached)
        response.ok_response.headers.append(
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=ADMITTED, value=admission.header_value()),
                append_action=_OVERWRITE,
            )
        )
        return response

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

    @classmethod
    def _not_from_the_edge(cls, http: Any, refusal: str) -> external_auth_pb2.CheckResponse:
        """401, also to a client whose edge has another token than authz (a misconfiguration)."""
        path = http.path.split("?", 1)[0]
        log_refusal(log, refusal, "Check", path, http.headers.get("x-request-id") or http.id)
        body = error_body(path, 401, "This gateway's edge is not trusted by its authorization service.")
        return cls._denied(401, orjson.dumps(body))

    @classmethod
    def _unavailable(cls, message: str) -> external_auth_pb2.CheckResponse:
        """A 503 with a plain message: Envoy's local-reply mappers put it in the client's shape."""
        response = cls._denied(503, message.encode(), 1)
        response.denied_response.headers[0].header.value = "text/plain"
        return response

    @staticmethod
    def _denied(status: int, body: bytes, retry_after: int | None = None) -> external_auth_pb2.CheckResponse:
        code = {
            401: code_pb2.UNAUTHENTICATED,
            403: code_pb2.PERMISSION_DENIED,
            429: code_pb2.RESOURCE_EXHAUSTED,
        }
        headers = [_JSON]
        if retry_after is not None:
            retry = base_pb2.HeaderValue(key="retry-after", value=str(retry_after))
            headers.append(base_pb2.HeaderValueOption(header=retry, append_action=_OVERWRITE))
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code.get(status, code_pb2.UNAVAILABLE)),
            denied_response=external_auth_pb2.DeniedHttpResponse(
                status=http_status_pb2.HttpStatus(code=status),
                headers=headers,
                body=body.decode(),
            ),
        )


def _internal_token_of(context: grpc.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata():
        if key == INTERNAL_TOKEN:
            return str(value)
    return None


def serve(settings: Settings) -> None:
    """Run authz until SIGTERM/SIGINT."""
    internal_token = InternalToken.from_settings(settings)  # stops here without one
    socket_path = settings.service_socket("authz")
    if socket_path is not None:  # stops here if the socket cannot be made, before any thread starts
        prepare_to_listen(socket_path)
    keys = KeyCache(settings.require_database_url(), settings.key_resync_interval_s)
    keys.start()
    store = BudgetStore(
        settings.require_database_url(), Ledger(), RateLimiter(), journal_dir=settings.data_dir / "authz"
    )
    store.start()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="check"),
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_concurrent_streams", 1000),
            # A check carries a model call's whole body (up to the edge's limit).
            ("grpc.max_receive_message_length", MAX_BODY_BYTES + 1024 * 1024),
        ],
    )
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(
        AuthorizationService(keys, settings, store, internal_token=internal_token), server
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if socket_path is None:
        address = f"{settings.bind_host}:{settings.authz_port}"
        server.add_insecure_port(address)
    else:
        address = f"unix:{socket_path}"
        server.add_insecure_port(address)  # bound (and listening) now, before start()
        restrict_to_owner(socket_path)
    freeze_startup_heap()
    server.start()

    def report_serving() -> None:
        # Healthy only once every key is in memory: before that, every check would fail.
        keys.wait_ready(timeout=3600)
        while not store.ready:
            time.sleep(0.05)
        health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        log.info("authz serving on %s with %d keys", address, len(keys))

    health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    threading.Thread(target=report_serving, daemon=True).start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=2).wait()
    store.stop()
    keys.stop()
