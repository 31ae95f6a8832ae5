"""What a real Envoy, running the generated bootstrap, does for "only the edge is trusted".

- Every `x-brproxy-*` header a client sends is dropped, whatever its case, and what reaches
  the service behind carries exactly one: the deployment's internal token. The service here
  is a small HTTP server that records the headers it gets, behind the `/health` route (the
  one route that needs no authz, so no other service has to run).
- Envoy's admin interface is a Unix socket with mode 0600: root reaches it, another local
  user does not, even with the directory open to everyone (the control, a 0777 socket in the
  same directory, shows that user could otherwise connect).
"""

from __future__ import annotations

import errno
import http.server
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from edge_process import admin_says_ready, envoy_admin, running_envoy
from local_ports import free_port
from other_user import connect_as_nobody, directory_anyone_may_enter, need_root, socket_anyone_may_connect_to

from core.internal_headers import INTERNAL_TOKEN
from edge.envoy_config import EdgeConfig

TOKEN = "internal-token-for-the-edge-tests-0123456789"


@dataclass
class Recorder:
    """An HTTP service that answers 200 and keeps the headers of every request it got."""

    port: int
    requests: list[list[tuple[str, str]]] = field(default_factory=list)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    found = Recorder(port=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found.requests.append([(name.lower(), value) for name, value in self.headers.items()])
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Edge:
    port: int
    admin_socket: Path


@pytest.fixture
def edge(recorder: Recorder) -> Iterator[Edge]:
    with directory_anyone_may_enter() as directory:
        port, admin_socket = free_port(), directory / "admin.sock"
        unused = ("127.0.0.1", free_port())
        config = EdgeConfig(
            "127.0.0.1", port, admin_socket, None, None, unused, unused, ("127.0.0.1", recorder.port),
            internal_token=TOKEN,
        )  # fmt: skip
        with running_envoy(config, directory, lambda: admin_says_ready(admin_socket)):
            yield Edge(port, admin_socket)


FORGED = [
    (INTERNAL_TOKEN, "a-token-the-client-made-up-0123456789abcdef"),
    ("X-BRPROXY-INTERNAL-TOKEN", "the-same-in-capitals-0123456789abcdef"),
    ("x-brproxy-key-id", "3"),
    ("X-Brproxy-Key-Role", "bootstrap"),
    ("x-brproxy-admitted", "999999"),
    ("x-brproxy-anything-new", "1"),
]


def test_a_client_cannot_send_any_internal_header_and_the_service_gets_the_token(
    edge: Edge, recorder: Recorder
) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{edge.port}", trust_env=False) as client:
        answer = client.get("/health", headers=FORGED)
        plain = client.get("/health")

    assert (answer.status_code, plain.status_code) == (200, 200)
    forged_request, plain_request = recorder.requests
    for headers in (forged_request, plain_request):
        internal = [(name, value) for name, value in headers if name.startswith("x-brproxy-")]
        assert internal == [(INTERNAL_TOKEN, TOKEN)]


def test_envoys_admin_socket_is_its_owners_only(edge: Edge) -> None:
    need_root()
    mode = edge.admin_socket.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600

    with envoy_admin(edge.admin_socket) as admin:
        assert admin.get("/ready").status_code == 200  # its owner (root here) is served

    assert connect_as_nobody(edge.admin_socket) == f"errno {errno.EACCES}"
    # The control: in the same directory, a socket open to everyone is reachable by nobody, so
    # the refusal above is the admin socket's own mode, not the way to it.
    with socket_anyone_may_connect_to(edge.admin_socket.with_name("control.sock")) as control:
        assert connect_as_nobody(control) == "connected"
