"""The Envoy configuration, generated from typed settings (envoy-data-plane messages).

Nothing here is hand-edited YAML: `build_bootstrap` assembles Envoy's own protobuf types,
so a misspelt field fails in Python, and `render` serialises them to the JSON Envoy reads.

Request path through the listener's HTTP filters, in order:
1. header_mutation — drops any `x-brproxy-*` identity header a client sent;
2. cors — answers browser preflights (BRClient's web build) before authentication;
3. ext_authz — asks the authz service (gRPC) about every request except `/health`; only the
   credential headers are sent to it, and for `/v1/*` the first 16 KiB of the body (to
   estimate the call's cost), never a whole prompt;
4. router — `/v1/*` to the translator (no timeout: streams), `/admin/*`, `/user/*` and
   `/health` to the admin API; anything else gets a JSON 404 from Envoy itself.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from envoy_data_plane.envoy.config.accesslog.v3 import (
    AccessLogFilter,
    AndFilter,
    ComparisonFilter,
    ComparisonFilterOp,
    HeaderFilter,
    StatusCodeFilter,
)
from envoy_data_plane.envoy.config.bootstrap.v3 import Admin, Bootstrap, BootstrapStaticResources
from envoy_data_plane.envoy.config.cluster.v3 import (
    CircuitBreakers,
    CircuitBreakersThresholds,
    Cluster,
    ClusterDiscoveryType,
)
from envoy_data_plane.envoy.config.common.mutation_rules.v3 import HeaderMutation as HeaderMutationRule
from envoy_data_plane.envoy.config.core.v3 import (
    Address,
    ApiVersion,
    DataSource,
    GrpcService,
    GrpcServiceEnvoyGrpc,
    Http1ProtocolOptions,
    Http2ProtocolOptions,
    HttpProtocolOptions,
    RuntimeUInt32,
    SocketAddress,
    SubstitutionFormatString,
    TransportSocket,
)
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.config.overload.v3 import OverloadManager, ResourceMonitor
from envoy_data_plane.envoy.config.route.v3 import (
    DirectResponseAction,
    HeaderMatcher,
    RetryPolicy,
    RetryPolicyRetryBackOff,
    Route,
    RouteAction,
    RouteConfiguration,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.extensions.filters.http.cors.v3 import Cors, CorsPolicy
from envoy_data_plane.envoy.extensions.filters.http.ext_authz.v3 import (
    BufferSettings,
    CheckSettings,
    ExtAuthz,
    ExtAuthzPerRoute,
)
from envoy_data_plane.envoy.extensions.filters.http.header_mutation.v3 import HeaderMutation, Mutations
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpConnectionManagerCodecType,
    HttpFilter,
    LocalReplyConfig,
    ResponseMapper,
)
from envoy_data_plane.envoy.extensions.resource_monitors.downstream_connections.v3 import (
    DownstreamConnectionsConfig,
)
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CommonTlsContext,
    DownstreamTlsContext,
    TlsCertificate,
)
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptions as UpstreamHttpProtocolOptions,
)
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptionsExplicitHttpConfig,
)
from envoy_data_plane.envoy.type.matcher.v3 import ListStringMatcher, RegexMatcher, StringMatcher
from envoy_data_plane.envoy.type.v3 import HttpStatus, StatusCode
from envoy_data_plane.google.protobuf import Any as AnyProto
from envoy_data_plane.google.protobuf import Struct

from core.internal_headers import KEY_ID, KEY_ROLE
from core.settings import Settings

__all__ = ["AUTHZ_BODY_BYTES", "EdgeConfig", "build_bootstrap", "render"]

_EXT_AUTHZ = "envoy.filters.http.ext_authz"
_CORS = "envoy.filters.http.cors"
_UPSTREAM_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
AUTHZ_BODY_BYTES = 16384
"""How much of a model call's body authz sees (to read `model` and `max_tokens`)."""
_BIG = 100_000  # circuit-breaker ceilings: concurrency is bounded by the services, not Envoy
_CORS_HEADERS = (
    "authorization, content-type, session-id, x-api-key, anthropic-version, anthropic-beta, "
    "anthropic-dangerous-direct-browser-access, x-claude-code-session-id, "
    "x-stainless-arch, x-stainless-lang, x-stainless-os, x-stainless-package-version, "
    "x-stainless-runtime, x-stainless-runtime-version, x-stainless-retry-count, x-stainless-timeout"
)


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """What the edge needs to know, taken from Settings."""

    listen_host: str
    listen_port: int
    admin_port: int
    tls_cert: Path | None
    tls_key: Path | None
    authz: tuple[str, int]
    translator: tuple[str, int]
    admin_api: tuple[str, int]
    max_connections: int = 10_000
    """Client connections open at once, over all listeners; Envoy closes any beyond it."""

    @classmethod
    def from_settings(cls, settings: Settings, cert: Path | None, key: Path | None) -> EdgeConfig:
        return cls(
            listen_host=settings.host,
            listen_port=settings.port,
            admin_port=settings.envoy_admin_port,
            tls_cert=None if settings.plain_http else cert,
            tls_key=None if settings.plain_http else key,
            authz=(settings.authz_host, settings.authz_port),
            translator=(settings.translator_host, settings.translator_port),
            admin_api=(settings.admin_host, settings.admin_port),
            max_connections=settings.max_connections,
        )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _cluster(name: str, address: tuple[str, int], *, http2: bool) -> Cluster:
    host, port = address
    protocol = (
        HttpProtocolOptionsExplicitHttpConfig(http2_protocol_options=Http2ProtocolOptions())
        if http2
        else HttpProtocolOptionsExplicitHttpConfig(http_protocol_options=Http1ProtocolOptions())
    )
    return Cluster(
        name=name,
        # A name (Kubernetes service) is resolved and re-resolved; an IP is used as is.
        type=ClusterDiscoveryType.STATIC if _is_ip(host) else ClusterDiscoveryType.STRICT_DNS,
        connect_timeout=dt.timedelta(seconds=2),
        load_assignment=ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                LocalityLbEndpoints(
                    lb_endpoints=[
                        LbEndpoint(
                            endpoint=Endpoint(
                                address=Address(socket_address=SocketAddress(address=host, port_value=port))
                            )
                        )
                    ]
                )
            ],
        ),
        typed_extension_protocol_options={
            _UPSTREAM_OPTIONS: AnyProto.pack(
                UpstreamHttpProtocolOptions(
                    explicit_http_config=protocol,
                    common_http_protocol_options=HttpProtocolOptions(idle_timeout=dt.timedelta(seconds=60)),
                )
            )
        },
        circuit_breakers=CircuitBreakers(
            thresholds=[
                CircuitBreakersThresholds(
                    max_connections=_BIG, max_pending_requests=_BIG, max_requests=_BIG, max_retries=_BIG
                )
            ]
        ),
    )


def _struct(value: dict[str, Any]) -> Struct:
    struct: Struct = Struct.from_dict(value)
    return struct


def _error_mapper(path_prefix: str | None, body: dict[str, Any]) -> ResponseMapper:
    """Envoy's own 5xx replies (upstream down, authz unreachable) in the client's error shape."""
    status_5xx = AccessLogFilter(
        status_code_filter=StatusCodeFilter(
            comparison=ComparisonFilter(
                op=ComparisonFilterOp.GE, value=RuntimeUInt32(default_value=500, runtime_key="brproxy.5xx")
            )
        )
    )
    if path_prefix is None:
        match = status_5xx
    else:
        on_path = AccessLogFilter(
            header_filter=HeaderFilter(
                header=HeaderMatcher(name=":path", string_match=StringMatcher(prefix=path_prefix))
            )
        )
        match = AccessLogFilter(and_filter=AndFilter(filters=[status_5xx, on_path]))
    return ResponseMapper(
        filter=match,
        body_format_override=SubstitutionFormatString(
            json_format=_struct(body), content_type="application/json"
        ),
    )


def _local_replies() -> LocalReplyConfig:
    message = "%LOCAL_REPLY_BODY%"
    return LocalReplyConfig(
        mappers=[
            _error_mapper(
                "/v1/messages", {"type": "error", "error": {"type": "api_error", "message": message}}
            ),
            _error_mapper("/admin", {"success": False, "data": message}),
            _error_mapper("/user", {"success": False, "data": message}),
            _error_mapper(
                None, {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
            ),
        ]
    )


def _json_404() -> DirectResponseAction:
    body = {
        "error": {
            "message": "Unknown route.",
            "type": "invalid_request_error",
            "param": None,
            "code": "unknown_url",
        }
    }
    return DirectResponseAction(status=404, body=DataSource(inline_string=orjson.dumps(body).decode()))


def _routes() -> list[Route]:
    no_authz = {_EXT_AUTHZ: AnyProto.pack(ExtAuthzPerRoute(disabled=True))}
    # No overall deadline for model calls: a long generation streams for minutes. Idle
    # streams are bounded by the connection manager's stream_idle_timeout instead.
    # A service restarting (crash, deploy) refuses connections for a moment: retry those,
    # and only those, since such a request never reached the service (a model call is never
    # made twice).
    retry = RetryPolicy(
        retry_on="connect-failure,refused-stream",
        num_retries=10,
        retry_back_off=RetryPolicyRetryBackOff(
            base_interval=dt.timedelta(milliseconds=100), max_interval=dt.timedelta(seconds=1)
        ),
    )
    streaming = RouteAction(cluster="translator", timeout=dt.timedelta(seconds=0), retry_policy=retry)
    # authz reads the model and max_tokens from the head of a model call's body to reserve
    # its cost; the head only: a long prompt never crosses that hop in full.
    body_head = {
        _EXT_AUTHZ: AnyProto.pack(
            ExtAuthzPerRoute(
                check_settings=CheckSettings(
                    with_request_body=BufferSettings(
                        max_request_bytes=AUTHZ_BODY_BYTES, allow_partial_message=True, pack_as_bytes=True
                    )
                )
            )
        )
    }
    return [
        Route(
            match=RouteMatch(path="/health"),
            route=RouteAction(cluster="admin_api", timeout=dt.timedelta(seconds=5)),
            typed_per_filter_config=no_authz,
        ),
        Route(match=RouteMatch(prefix="/v1/"), route=streaming, typed_per_filter_config=body_head),
        Route(
            match=RouteMatch(prefix="/admin/"),
            route=RouteAction(cluster="admin_api", timeout=dt.timedelta(seconds=60), retry_policy=retry),
        ),
        Route(
            match=RouteMatch(prefix="/user/"),
            route=RouteAction(cluster="admin_api", timeout=dt.timedelta(seconds=60), retry_policy=retry),
        ),
        Route(match=RouteMatch(prefix="/"), direct_response=_json_404(), typed_per_filter_config=no_authz),
    ]


def _cors_policy() -> CorsPolicy:
    return CorsPolicy(
        allow_origin_string_match=[StringMatcher(safe_regex=RegexMatcher(regex=".*"))],
        allow_methods="GET, POST, OPTIONS",
        allow_headers=_CORS_HEADERS,
        expose_headers="x-request-id, retry-after",
        max_age="86400",
    )


def _http_filters(authz_timeout: dt.timedelta) -> list[HttpFilter]:
    strip_identity = HeaderMutation(
        mutations=Mutations(
            request_mutations=[HeaderMutationRule(remove=KEY_ID), HeaderMutationRule(remove=KEY_ROLE)]
        )
    )
    ext_authz = ExtAuthz(
        grpc_service=GrpcService(
            envoy_grpc=GrpcServiceEnvoyGrpc(cluster_name="authz"), timeout=authz_timeout
        ),
        transport_api_version=ApiVersion.V3,
        failure_mode_allow=False,
        status_on_error=HttpStatus(code=StatusCode.ServiceUnavailable),
        # Only the credentials go to authz: prompts and images never cross that hop.
        allowed_headers=ListStringMatcher(
            patterns=[
                StringMatcher(exact="authorization"),
                StringMatcher(exact="x-api-key"),
                StringMatcher(exact="content-length"),
                # The request's id at the edge: authz keys its reservation by it, and the
                # translator uses it as the usage event's id, which frees the reservation.
                StringMatcher(exact="x-request-id"),
            ]
        ),
    )
    return [
        HttpFilter(name="envoy.filters.http.header_mutation", typed_config=AnyProto.pack(strip_identity)),
        HttpFilter(name=_CORS, typed_config=AnyProto.pack(Cors())),
        HttpFilter(name=_EXT_AUTHZ, typed_config=AnyProto.pack(ext_authz)),
        HttpFilter(name="envoy.filters.http.router", typed_config=AnyProto.pack(Router())),
    ]


def build_bootstrap(config: EdgeConfig) -> Bootstrap:
    """The whole Envoy bootstrap for one edge."""
    manager = HttpConnectionManager(
        stat_prefix="brproxy",
        codec_type=HttpConnectionManagerCodecType.AUTO,
        use_remote_address=True,
        # The request id is the usage event's id: a client can quote it to find its thread.
        always_set_request_id_in_response=True,
        normalize_path=True,
        merge_slashes=True,
        stream_idle_timeout=dt.timedelta(seconds=900),
        request_timeout=dt.timedelta(seconds=0),
        common_http_protocol_options=HttpProtocolOptions(idle_timeout=dt.timedelta(seconds=300)),
        route_config=RouteConfiguration(
            name="brproxy",
            virtual_hosts=[
                VirtualHost(
                    name="brproxy",
                    domains=["*"],
                    routes=_routes(),
                    typed_per_filter_config={_CORS: AnyProto.pack(_cors_policy())},
                )
            ],
        ),
        http_filters=_http_filters(dt.timedelta(seconds=2)),
        local_reply_config=_local_replies(),
    )
    chain = FilterChain(
        filters=[
            Filter(name="envoy.filters.network.http_connection_manager", typed_config=AnyProto.pack(manager))
        ]
    )
    if config.tls_cert is not None and config.tls_key is not None:
        tls = DownstreamTlsContext(
            common_tls_context=CommonTlsContext(
                tls_certificates=[
                    TlsCertificate(
                        certificate_chain=DataSource(filename=str(config.tls_cert.resolve())),
                        private_key=DataSource(filename=str(config.tls_key.resolve())),
                    )
                ],
                alpn_protocols=["h2", "http/1.1"],
            )
        )
        chain.transport_socket = TransportSocket(
            name="envoy.transport_sockets.tls", typed_config=AnyProto.pack(tls)
        )
    listener = Listener(
        name="brproxy",
        address=Address(
            socket_address=SocketAddress(address=config.listen_host, port_value=config.listen_port)
        ),
        filter_chains=[chain],
    )
    # A ceiling on open client connections: without one, a flood of idle connections would
    # take every file descriptor, and the edge's upstream connections and log files with them.
    # Connections over it are accepted and closed at once (counted in
    # `listener.<address>.downstream_global_cx_overflow`); those already open are not touched.
    connection_limit = ResourceMonitor(
        name="envoy.resource_monitors.global_downstream_max_connections",
        typed_config=AnyProto.pack(
            DownstreamConnectionsConfig(max_active_downstream_connections=config.max_connections)
        ),
    )
    return Bootstrap(
        overload_manager=OverloadManager(resource_monitors=[connection_limit]),
        admin=Admin(
            address=Address(socket_address=SocketAddress(address="127.0.0.1", port_value=config.admin_port))
        ),
        static_resources=BootstrapStaticResources(
            listeners=[listener],
            clusters=[
                _cluster("authz", config.authz, http2=True),
                _cluster("translator", config.translator, http2=False),
                _cluster("admin_api", config.admin_api, http2=False),
            ],
        ),
    )


def render(config: EdgeConfig) -> str:
    """The bootstrap as JSON, the form Envoy's `-c` reads."""
    return orjson.dumps(build_bootstrap(config).to_dict(), option=orjson.OPT_INDENT_2).decode()
