"""The one configuration object every BRProxy process reads.

`brproxy up` (the supervisor) fills these from its command line and hands them to each
child process as `BRPROXY_*` environment variables; in Kubernetes the same variables come
from the manifests. Nothing else configures a service, so a service started by hand with
the same environment behaves exactly like one started by the supervisor.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.internal_auth import token_problem
from core.unix_sockets import socket_path_problem

__all__ = [
    "SERVICES",
    "Service",
    "Settings",
    "database_url_from_env",
    "settings_problems",
    "socket_dir_problem",
]

Service = Literal["authz", "translator", "meter", "admin"]
"""The internal services behind the edge (the admin API is `admin`, as in its settings)."""
SERVICES: tuple[Service, ...] = ("authz", "translator", "meter", "admin")


def socket_dir_problem(directory: Path) -> str | None:
    """Why the services' sockets cannot be in `directory` (its longest would be too long), or None."""
    longest = max(SERVICES, key=len)
    problem = socket_path_problem(directory / f"{longest}.sock")
    return None if problem is None else f"with `{longest}.sock` it is {problem}"


def database_url_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The external database URL: `DATABASE_URL`, else one built from the original `PGSQL_*` variables.

    Returns None when neither is set, which means "use the embedded Postgres".
    """
    env = os.environ if environ is None else environ
    url = env.get("BRPROXY_DATABASE_URL") or env.get("DATABASE_URL")
    if url:
        return url
    host = env.get("PGSQL_HOST")
    if not host:
        return None
    user = quote(env.get("PGSQL_USER", "postgres"), safe="")
    password = env.get("PGSQL_PASSWORD")
    auth = f"{user}:{quote(password, safe='')}" if password else user
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    port = env.get("PGSQL_PORT", "5432")
    database = quote(env.get("PGSQL_DATABASE", "brproxy"), safe="")
    return f"postgresql://{auth}@{host}:{port}/{database}"


class Settings(BaseSettings):
    """Settings shared by the supervisor and every service (env prefix `BRPROXY_`)."""

    # env_ignore_empty: `BRPROXY_TLS_CERT=` (as compose files write unset values) means unset.
    model_config = SettingsConfigDict(env_prefix="BRPROXY_", extra="ignore", env_ignore_empty=True)

    data_dir: Path = Path(".brproxy")
    """Holds the embedded database, generated certificates, spool files and the Envoy config."""

    host: str = "127.0.0.1"
    """Address the public (Envoy) listener binds to; 0.0.0.0 to serve the network."""

    port: int = 8866
    """Port of the public (Envoy) listener."""

    plain_http: bool = False
    """Serve plain HTTP instead of HTTPS (only behind another TLS terminator)."""

    tls_cert: Path | None = None
    """PEM certificate chain for the public listener; generated (self-signed) when unset."""

    tls_key: Path | None = None
    """PEM private key matching `tls_cert`."""

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("BRPROXY_DATABASE_URL", "DATABASE_URL")
    )
    """Postgres URL. The supervisor always sets it for its children (embedded or external)."""

    admin_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("BRPROXY_ADMIN_API_KEY", "ADMIN_API_KEY")
    )
    """Bootstrap admin key: valid only on `/admin/*`, to create the first real admin key."""

    internal_token: SecretStr | None = None
    """The deployment's internal secret (core/internal_auth.py): Envoy adds it to everything it
    sends the services, and they refuse any request without it. `brproxy up` makes one per
    data dir when it is unset; in Kubernetes or Compose it comes from the Secret."""

    @field_validator("internal_token")
    @classmethod
    def _internal_token_is_usable(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            problem = token_problem(value.get_secret_value())
            if problem is not None:
                raise ValueError(problem)
        return value

    socket_dir: Path | None = None
    """On one machine: the internal services (authz, translator, meter, admin API) listen on,
    and are reached at, Unix sockets in this directory (`authz.sock`, `translator.sock`,
    `meter.sock`, `admin.sock`: `service_socket`), never on TCP ports. `brproxy up` sets it
    to `<data dir>/run`, mode 0700: no other local user can connect to a service or take its
    name, not even while it restarts (a loopback port, they could). Unset (Kubernetes,
    Compose: each pod has its own network namespace), they use TCP on the `*_host`/`*_port`
    below. Either way, every request carries the internal token."""

    @field_validator("socket_dir")
    @classmethod
    def _socket_paths_fit(cls, value: Path | None) -> Path | None:
        problem = None if value is None else socket_dir_problem(value)
        if problem is not None:  # never the path itself: no setting's value is shown
            raise ValueError(f"too long: {problem}; use a shorter directory")
        return value

    bind_host: str = "127.0.0.1"
    """Address the internal services listen on over TCP (without `socket_dir`)."""

    authz_host: str = "127.0.0.1"
    """Where Envoy and the health check reach the authz gRPC service."""
    authz_port: int = 18867

    translator_host: str = "127.0.0.1"
    """Where Envoy reaches the translator."""
    translator_port: int = 18868

    meter_host: str = "127.0.0.1"
    """Where translators send usage events."""
    meter_port: int = 18869

    admin_host: str = "127.0.0.1"
    """Where Envoy reaches the admin API."""
    admin_port: int = 18870

    max_connections: int = Field(default=10_000, ge=1, le=2**31 - 1)
    """Client connections the edge holds open at once; it closes new ones beyond this. Keep it
    under the open-files limit (`ulimit -n`) the edge runs with."""

    max_connections_per_source: int = Field(default=1_000, ge=1, le=2**31 - 1)
    """Client connections the edge holds open at once from one source address (strictly: from
    the addresses whose last byte is equal modulo 64, edge/source_limits.py), so that one
    client cannot fill `max_connections` alone. At `max_connections` or above it is off (behind
    another proxy every connection comes from that proxy's address)."""

    tls_handshake_timeout_s: float = Field(default=10.0, ge=0.1, le=86_400)
    """Seconds a new connection has to complete its TLS handshake before the edge closes it."""

    request_headers_timeout_s: float = Field(default=10.0, ge=0.1, le=86_400)
    """Seconds a client has, from a request's first byte, to send all its headers."""

    idle_timeout_s: float = Field(default=120.0, ge=0.1, le=86_400)
    """Seconds a client connection may stay open with no request in flight (keep-alive).
    Longer than common clients keep an idle connection pooled (Go's 90 s, httpx's 5 s), so
    they seldom send a request on a connection the edge is just closing."""

    request_timeout_s: float = Field(default=300.0, ge=1, le=86_400)
    """Seconds a request (headers and body) may take to arrive whole; a body trickled in more
    slowly is cut (408). Time to send a 32 MiB body at 1 Mbit/s, with room; never a limit on
    the answer, which may stream for as long as the call runs."""

    edge_max_heap_mb: int = Field(default=1024, ge=64, le=1024 * 1024)
    """Memory the edge may use, mostly for request bodies it buffers (authz reads a model
    call's whole body before the call is admitted): near it, the streams holding the most
    memory are reset, and new requests refused (503) until memory is back."""

    bedrock_simulator: bool = False
    """True when the translator talks to the local Bedrock simulator instead of AWS."""

    simulator_port: int = 18872
    """Port of the Bedrock simulator when it runs."""

    billing_timezone: str = "UTC"
    """Time zone whose calendar months bound the monthly quota."""

    workers: int = 1
    """Worker processes per HTTP service (translator, admin API)."""

    sse_keepalive_s: float = 15.0
    """Seconds of silence after which a stream gets a keep-alive (an SSE comment, or an
    Anthropic `ping`), so idle timeouts in front of BRProxy do not cut long-thinking requests;
    0 turns keep-alives off."""

    meter_flush_interval_ms: int = 50
    """How long the translator gathers usage events before shipping a batch to the meter."""

    key_resync_interval_s: float = 30.0
    """Safety net: authz reloads every key this often even if no change notification arrived."""

    log_level: str = "info"

    def service_socket(self, service: Service) -> Path | None:
        """The Unix socket `service` listens on and is reached at; None: TCP (no `socket_dir`)."""
        if self.socket_dir is None:
            return None
        return self.socket_dir.absolute() / f"{service}.sock"

    def service_address(self, service: Service) -> Path | tuple[str, int]:
        """Where `service` is reached: its Unix socket, else (host, port)."""
        socket = self.service_socket(service)
        if socket is not None:
            return socket
        return {
            "authz": (self.authz_host, self.authz_port),
            "translator": (self.translator_host, self.translator_port),
            "meter": (self.meter_host, self.meter_port),
            "admin": (self.admin_host, self.admin_port),
        }[service]

    def service_url(self, service: Service) -> str:
        """The base URL of an HTTP service. With a socket it names the service only (the
        Host header); the connection goes to `service_socket`, never to that name."""
        address = self.service_address(service)
        if isinstance(address, Path):
            return f"http://{service}"
        host, port = address
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"http://{host}:{port}"

    @property
    def authz_grpc_target(self) -> str:
        """The gRPC target of authz: `unix:/path`, or `host:port` (an IPv6 literal in brackets)."""
        address = self.service_address("authz")
        if isinstance(address, Path):
            return f"unix:{address}"
        host, port = address
        return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"

    @property
    def meter_url(self) -> str:
        return self.service_url("meter")

    @property
    def translator_url(self) -> str:
        return self.service_url("translator")

    @property
    def simulator_url(self) -> str:
        return f"http://127.0.0.1:{self.simulator_port}"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def envoy_admin_socket(self) -> Path:
        """Envoy's own admin interface (stats, readiness): a Unix socket only its owner may
        connect to, never a TCP port (it shows the configuration, internal token included)."""
        return self.data_dir / "envoy" / "admin.sock"

    @property
    def public_url(self) -> str:
        scheme = "http" if self.plain_http else "https"
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0", "::") else self.host
        return f"{scheme}://{host}:{self.port}"

    def require_database_url(self) -> str:
        """The database URL, or a clear error for a service started without one."""
        url = self.database_url or database_url_from_env()
        if not url:
            raise SystemExit(
                "BRProxy: no database configured (set DATABASE_URL, or start the stack with `brproxy up`)"
            )
        return url


def settings_problems(error: ValidationError) -> list[str]:
    """One line per invalid setting, naming the environment variable(s) that set it.

    Never the value: it may be a secret (`ADMIN_API_KEY`, a password in `DATABASE_URL`).
    """
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        name = str(problem["loc"][0]) if problem["loc"] else ""
        field = Settings.model_fields.get(name)
        alias = field.validation_alias if field is not None else None
        if isinstance(alias, AliasChoices):
            variables = " / ".join(str(choice) for choice in alias.choices)
        elif field is not None:
            variables = f"BRPROXY_{name.upper()}"
        else:
            variables = name
        lines.append(f"{variables}: {problem['msg']}")
    return lines
