"""The Envoy configuration, generated from typed settings (envoy-data-plane messages).

Nothing here is hand-edited YAML: `build_bootstrap` assembles Envoy's own protobuf types,
so a misspelt field fails in Python, and `render` serialises them to the JSON Envoy reads.

A new connection first goes to the filter chain of its source address's bucket, whose
connection limit keeps one client from taking every connection (edge/source_limits.py);
Envoy's own replies get the client's error shape (edge/local_replies.py).

Request path through the listener's HTTP filters, in order:
1. header_mutation — drops every `x-brproxy-*` header a client sent (identity, internal token);
2. cors — answers browser preflights (BRClient's web build) before authentication;
3. ext_authz — asks the authz service (gRPC) about every request except `/health`; the
   credential headers are sent to it, and for `/v1/*` the whole body (to reserve the call's
   worst-case cost from the same reading the translator acts on);
4. router — `/v1/*` to the translator (no timeout: streams), `/admin/*`, `/user/*` and
   `/health` to the admin API; anything else gets a JSON 404 from Envoy itself.

Everything Envoy sends a service (and its calls to authz, as gRPC metadata) carries the
deployment's internal token, without which every service refuses it (core/internal_auth.py).
On one machine it reaches the services at Unix sockets only their owner may use
(Settings.socket_dir); elsewhere (Kubernetes, Compose) at host:port.
The admin interface is a Unix socket only Envoy's owner may connect to.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from envoy_data_plane.envoy.config.bootstrap.v3 import Admin, Bootstrap, BootstrapStaticResources
from envoy_data_plane.envoy.config.cluster.v3 import (
    CircuitBreakers,
    CircuitBreakersThresholds,
    Cluster,
    ClusterDiscoveryType,
)
from envoy_data_plane.envoy.config.common.mutation_rules.v3 import HeaderMutation as HeaderMutationRule
from envoy_data_plane.envoy.config.common.mutation_rules.v3 import HeaderMutationRemoveOnMatch
from envoy_data_plane.envoy.config.core.v3 import (
    Address,
    ApiVersion,
    DataSource,
    GrpcService,
    GrpcServiceEnvoyGrpc,
    HeaderValue,
    HeaderValueOption,
    HeaderValueOptionHeaderAppendAction,
    Http1ProtocolOptions,
    Http2ProtocolOptions,
    HttpProtocolOptions,
    Pipe,
    SocketAddress,
    TransportSocket,
)
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.config.overload.v3 import (
    BufferFactoryConfig,
    OverloadAction,
    OverloadManager,
    ResourceMonitor,
    ScaledTrigger,
    ThresholdTrigger,
    Trigger,
)
from envoy_data_plane.envoy.config.route.v3 import (
    DirectResponseAction,
    RetryPolicy,
    RetryPolicyRetryBackOff,
    Route,
    RouteAction,
    RouteActionMaxStreamDuration,
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
)
from envoy_data_plane.envoy.extensions.resource_monitors.downstream_connections.v3 import (
    DownstreamConnectionsConfig,
)
from envoy_data_plane.envoy.extensions.resource_monitors.fixed_heap.v3 import FixedHeapConfig
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

from core.admission import MAX_BODY_BYTES, MAX_CALL_SECONDS
from core.internal_auth import InternalToken
from core.internal_headers import INTERNAL_PREFIX, INTERNAL_TOKEN
from core.settings import Settings
from edge.local_replies import MAX_REQUEST_HEADERS_COUNT, MAX_REQUEST_HEADERS_KB, local_replies
from edge.source_limits import chains_as_dicts, per_source_chains

__all__ = ["MAX_BODY_BYTES", "EdgeConfig", "build_bootstrap", "render"]

_EXT_AUTHZ = "envoy.filters.http.ext_authz"
_FIXED_HEAP = "envoy.resource_monitors.fixed_heap"
_CORS = "envoy.filters.http.cors"
_UPSTREAM_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
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
    admin_socket: Path
    """Envoy's admin interface: a Unix socket only its owner may connect to (mode 0600)."""
    tls_cert: Path | None
    tls_key: Path | None
    authz: Path | tuple[str, int]
    """Where each service is reached: a Unix socket (one machine), or (host, port)."""
    translator: Path | tuple[str, int]
    admin_api: Path | tuple[str, int]
    max_connections: int = 10_000
    """Client connections open at once, over all listeners; Envoy closes any beyond it."""
    max_connections_per_source: int = 1_000
    """Client connections open at once from one source address (edge/source_limits.py);
    Envoy closes any beyond it. At `max_connections` or above, there is no such limit."""
    tls_handshake_timeout: dt.timedelta = dt.timedelta(seconds=10)
    """How long a new connection has to complete its TLS handshake."""
    request_headers_timeout: dt.timedelta = dt.timedelta(seconds=10)
    """How long a request's headers may take to arrive, from their first byte."""
    idle_timeout: dt.timedelta = dt.timedelta(seconds=120)
    """How long a client connection may stay open with no request in flight."""
    request_timeout: dt.timedelta = dt.timedelta(seconds=300)
    """How long a request, body included, may take to arrive whole."""
    max_heap_bytes: int = 1024 * 2**20
    """Envoy's memory budget (see `_overload_manager`)."""
    internal_token: str = field(repr=False, kw_only=True)
    """The deployment's internal token (core/internal_auth.py), added to everything Envoy
    sends the services; it is in the rendered configuration, so that file is kept 0600."""

    @classmethod
    def from_settings(cls, settings: Settings, cert: Path | None, key: Path | None) -> EdgeConfig:
        return cls(
            listen_host=settings.host,
            listen_port=settings.port,
            admin_socket=settings.envoy_admin_socket,
            tls_cert=None if settings.plain_http else cert,
            tls_key=None if settings.plain_http else key,
            authz=settings.service_address("authz"),
            translator=settings.service_address("translator"),
            admin_api=settings.service_address("admin"),
            max_connections=settings.max_connections,
            max_connections_per_source=settings.max_connections_per_source,
            tls_handshake_timeout=dt.timedelta(seconds=settings.tls_handshake_timeout_s),
            request_headers_timeout=dt.timedelta(seconds=settings.request_headers_timeout_s),
            idle_timeout=dt.timedelta(seconds=settings.idle_timeout_s),
            request_timeout=dt.timedelta(seconds=settings.request_timeout_s),
            max_heap_bytes=settings.edge_max_heap_mb * 2**20,
            internal_token=InternalToken.from_settings(settings).value,
        )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _cluster(name: str, address: Path | tuple[str, int], *, http2: bool) -> Cluster:
    protocol = (
        HttpProtocolOptionsExplicitHttpConfig(http2_protocol_options=Http2ProtocolOptions())
        if http2
        else HttpProtocolOptionsExplicitHttpConfig(http_protocol_options=Http1ProtocolOptions())
    )
    if isinstance(address, Path):  # a Unix socket: nothing to resolve
        kind, endpoint = ClusterDiscoveryType.STATIC, Address(pipe=Pipe(path=str(address)))
    else:
        host, port = address
        # A name (Kubernetes service) is resolved and re-resolved; an IP is used as is.
        kind = ClusterDiscoveryType.STATIC if _is_ip(host) else ClusterDiscoveryType.STRICT_DNS
        endpoint = Address(socket_address=SocketAddress(address=host, port_value=port))
    return Cluster(
        name=name,
        type=kind,
        connect_timeout=dt.timedelta(seconds=2),
        load_assignment=ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[LocalityLbEndpoints(lb_endpoints=[LbEndpoint(endpoint=Endpoint(address=endpoint))])],
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


def _json_404() -> DirectResponseAction:
    """Envoy's answer to an unknown route; the local-reply mappers (edge/local_replies.py) give
    it the client's error shape: a path under none of the routes may still start with
    `/admin` or `/v1`."""
    return DirectResponseAction(status=404, body=DataSource(inline_string="Unknown route."))


# authz reserves a model call's worst-case cost from the whole body, read exactly as the
# translator will read it (core/admission.py): a head of the body, or a regex over it, can be
# made to disagree with the translator's parse (duplicate keys, fields after a long prompt,
# chunked uploads of unknown length). The body is buffered whole, up to MAX_BODY_BYTES (413
# beyond), and the same bytes then go to the translator. Set on the filter, not per route:
# Envoy takes `pack_as_bytes` only from the filter's settings (a per-route override sends
# the body as a UTF-8 string field).
_WHOLE_BODY = BufferSettings(
    max_request_bytes=MAX_BODY_BYTES, allow_partial_message=False, pack_as_bytes=True
)


def _routes() -> list[Route]:
    no_authz = {_EXT_AUTHZ: AnyProto.pack(ExtAuthzPerRoute(disabled=True))}
    # No response deadline for model calls: a long generation streams for minutes. Idle
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
    # A call ends at MAX_CALL_SECONDS at the latest (Bedrock's own limit for one inference):
    # authz's reservations outlive every call by that bound.
    streaming = RouteAction(
        cluster="translator",
        timeout=dt.timedelta(seconds=0),
        retry_policy=retry,
        max_stream_duration=RouteActionMaxStreamDuration(
            max_stream_duration=dt.timedelta(seconds=MAX_CALL_SECONDS)
        ),
    )
    # Only model calls send their body to authz (see `_WHOLE_BODY`); the admin API's do not.
    no_body = {
        _EXT_AUTHZ: AnyProto.pack(
            ExtAuthzPerRoute(check_settings=CheckSettings(disable_request_body_buffering=True))
        )
    }
    return [
        Route(
            match=RouteMatch(path="/health"),
            route=RouteAction(cluster="admin_api", timeout=dt.timedelta(seconds=5)),
            typed_per_filter_config=no_authz,
        ),
        Route(match=RouteMatch(prefix="/v1/"), route=streaming),
        Route(
            match=RouteMatch(prefix="/admin/"),
            route=RouteAction(cluster="admin_api", timeout=dt.timedelta(seconds=60), retry_policy=retry),
            typed_per_filter_config=no_body,
        ),
        Route(
            match=RouteMatch(prefix="/user/"),
            route=RouteAction(cluster="admin_api", timeout=dt.timedelta(seconds=60), retry_policy=retry),
            typed_per_filter_config=no_body,
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


def _internal_token(token: str) -> HeaderValueOption:
    """The header that tells the services a request came through the edge (core/internal_auth.py)."""
    return HeaderValueOption(
        header=HeaderValue(key=INTERNAL_TOKEN, value=token),
        append_action=HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
    )


def _http_filters(authz_timeout: dt.timedelta, internal_token: str) -> list[HttpFilter]:
    # Every x-brproxy-* header is the edge's to set (the caller's identity, the internal
    # token, what authz admitted): whatever a client sent under that prefix is dropped first.
    strip_internal = HeaderMutation(
        mutations=Mutations(
            request_mutations=[
                HeaderMutationRule(
                    remove_on_match=HeaderMutationRemoveOnMatch(
                        key_matcher=StringMatcher(prefix=INTERNAL_PREFIX, ignore_case=True)
                    )
                )
            ]
        )
    )
    ext_authz = ExtAuthz(
        grpc_service=GrpcService(
            envoy_grpc=GrpcServiceEnvoyGrpc(cluster_name="authz"),
            timeout=authz_timeout,
            initial_metadata=[HeaderValue(key=INTERNAL_TOKEN, value=internal_token)],
        ),
        transport_api_version=ApiVersion.V3,
        with_request_body=_WHOLE_BODY,
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
        HttpFilter(name="envoy.filters.http.header_mutation", typed_config=AnyProto.pack(strip_internal)),
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
        # A stream may be silent for long (a model thinking; BRPROXY_SSE_KEEPALIVE_S keeps it
        # far shorter), so streams keep a generous idle timeout. What is cut early is what no
        # healthy client does: headers trickling in (slowloris), a connection that never
        # completes its TLS handshake, a keep-alive connection nobody uses.
        stream_idle_timeout=dt.timedelta(seconds=900),
        # The whole request must arrive within this (a body trickled in to hold a buffer is
        # cut); it stops counting once the answer starts, so it never cuts a stream.
        request_timeout=config.request_timeout,
        request_headers_timeout=config.request_headers_timeout,
        # Envoy's edge recommendations: a client multiplexes at most 100 requests on one
        # connection (each may hold a buffered body), with modest flow-control windows.
        http2_protocol_options=Http2ProtocolOptions(
            max_concurrent_streams=100,
            initial_stream_window_size=65_536,
            initial_connection_window_size=1_048_576,
        ),
        max_request_headers_kb=MAX_REQUEST_HEADERS_KB,
        common_http_protocol_options=HttpProtocolOptions(
            idle_timeout=config.idle_timeout, max_headers_count=MAX_REQUEST_HEADERS_COUNT
        ),
        route_config=RouteConfiguration(
            name="brproxy",
            virtual_hosts=[
                VirtualHost(
                    name="brproxy",
                    domains=["*"],
                    routes=_routes(),
                    request_headers_to_add=[_internal_token(config.internal_token)],
                    typed_per_filter_config={_CORS: AnyProto.pack(_cors_policy())},
                )
            ],
        ),
        http_filters=_http_filters(dt.timedelta(seconds=2), config.internal_token),
        local_reply_config=local_replies(
            max_body_bytes=MAX_BODY_BYTES,
            request_headers_timeout_s=config.request_headers_timeout.total_seconds(),
            request_timeout_s=config.request_timeout.total_seconds(),
        ),
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
        # A connection that never completes its handshake (no bytes at all, or a trickle) is
        # closed then. Over plain HTTP such a connection has no request: the idle timeout ends it.
        chain.transport_socket_connect_timeout = config.tls_handshake_timeout
    listener = Listener(
        name="brproxy",
        address=Address(
            socket_address=SocketAddress(address=config.listen_host, port_value=config.listen_port)
        ),
        filter_chains=[chain],
        # Envoy's default on Linux is SO_REUSEPORT, with which a second edge (another
        # `brproxy up`) binds the same port and the kernel splits the clients between the two.
        enable_reuse_port=False,
    )
    if config.max_connections_per_source < config.max_connections:
        listener.filter_chains, listener.filter_chain_matcher = per_source_chains(
            chain, config.max_connections_per_source
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
        overload_manager=_overload_manager(connection_limit, config.max_heap_bytes),
        # A Unix socket no other local user may connect to: the admin interface dumps the
        # configuration (internal token included) and can stop Envoy.
        admin=Admin(address=Address(pipe=Pipe(path=str(config.admin_socket.absolute()), mode=0o600))),
        static_resources=BootstrapStaticResources(
            listeners=[listener],
            clusters=[
                _cluster("authz", config.authz, http2=True),
                _cluster("translator", config.translator, http2=False),
                _cluster("admin_api", config.admin_api, http2=False),
            ],
        ),
    )


def _overload_manager(connection_limit: ResourceMonitor, max_heap_bytes: int) -> OverloadManager:
    """The edge's limits on connections and memory.

    Memory: authz reads a model call's whole body (up to MAX_BODY_BYTES), so Envoy buffers it
    before anyone knows whether the caller has a key; many such bodies at once (a flood of
    large uploads, even without a key) must not take the machine's memory. From 80% of the
    heap budget, the streams holding the most buffered memory (tracked from 1 MiB) are reset,
    more of them the nearer the budget; at 95%, memory Envoy freed goes back to the system;
    at 98%, new requests are refused with 503 until there is room again.
    """
    heap = ResourceMonitor(
        name=_FIXED_HEAP,
        typed_config=AnyProto.pack(FixedHeapConfig(max_heap_size_bytes=max_heap_bytes)),
    )
    return OverloadManager(
        refresh_interval=dt.timedelta(milliseconds=250),
        resource_monitors=[connection_limit, heap],
        buffer_factory_config=BufferFactoryConfig(minimum_account_to_track_power_of_two=20),
        actions=[
            OverloadAction(
                name="envoy.overload_actions.reset_high_memory_stream",
                triggers=[
                    Trigger(
                        name=_FIXED_HEAP,
                        scaled=ScaledTrigger(scaling_threshold=0.80, saturation_threshold=0.95),
                    )
                ],
            ),
            OverloadAction(
                name="envoy.overload_actions.shrink_heap",
                triggers=[Trigger(name=_FIXED_HEAP, threshold=ThresholdTrigger(value=0.95))],
            ),
            OverloadAction(
                name="envoy.overload_actions.stop_accepting_requests",
                triggers=[Trigger(name=_FIXED_HEAP, threshold=ThresholdTrigger(value=0.98))],
            ),
        ],
    )


def render(config: EdgeConfig) -> str:
    """The bootstrap as JSON, the form Envoy's `-c` reads."""
    bootstrap = build_bootstrap(config)
    assert bootstrap.static_resources is not None
    (listener,) = bootstrap.static_resources.listeners
    chains, listener.filter_chains = listener.filter_chains, []
    data = bootstrap.to_dict()
    data["staticResources"]["listeners"][0]["filterChains"] = chains_as_dicts(chains)
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
