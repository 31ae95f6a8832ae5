"""The edge's ceiling on open client connections, enforced by a real Envoy.

Envoy runs the generated bootstrap (plain HTTP; no upstream service is needed: an unknown
route is answered by Envoy itself with a 404), with a ceiling of two connections.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from edge_process import admin_says_ready, envoy_admin, running_envoy
from local_ports import free_port
from raw_connections import held_open

from edge.envoy_config import EdgeConfig

LIMIT = 2


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[tuple[int, httpx.Client]]:
    port, admin_socket = free_port(), tmp_path / "admin.sock"
    unused = ("127.0.0.1", free_port())
    config = EdgeConfig(
        "127.0.0.1", port, admin_socket, None, None, unused, unused, unused,
        max_connections=LIMIT, internal_token="internal-token-for-tests-0123456789abcdef",
    )  # fmt: skip
    with (
        running_envoy(config, tmp_path, lambda: admin_says_ready(admin_socket)),
        envoy_admin(admin_socket) as admin,
    ):
        yield port, admin


def _exchange(connection: socket.socket) -> bytes:
    """One request Envoy answers itself (no route: 404); b"" if the edge closed the connection."""
    try:
        connection.sendall(b"GET /no-such-route HTTP/1.1\r\nHost: edge\r\n\r\n")
        return connection.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        return b""


def _overflows(admin: httpx.Client) -> int:
    answer = admin.get("/stats", params={"filter": "downstream_global_cx_overflow"}, timeout=5)
    lines = answer.text.splitlines()
    return sum(int(line.rsplit(":", 1)[1]) for line in lines if "downstream_global_cx_overflow" in line)


def test_connections_over_the_ceiling_are_closed_and_the_open_ones_keep_working(
    edge: tuple[int, httpx.Client],
) -> None:
    port, admin = edge
    with held_open(lambda: socket.create_connection(("127.0.0.1", port), timeout=5), LIMIT) as held:
        for connection in held:  # both are served (and so counted as open by Envoy)
            assert _exchange(connection).startswith(b"HTTP/1.1 404")

        with socket.create_connection(("127.0.0.1", port), timeout=5) as over:
            assert _exchange(over) == b""  # closed by the edge, no answer
        # Envoy may count the closed connection a moment after closing it.
        deadline = time.monotonic() + 5
        while _overflows(admin) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _overflows(admin) >= 1

        for connection in held:  # the open ones are untouched
            assert _exchange(connection).startswith(b"HTTP/1.1 404")

    # With the connections gone, a new one is served again (Envoy counts the closes first).
    deadline = time.monotonic() + 10
    while True:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as again:
            answer = _exchange(again)
        if answer or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer.startswith(b"HTTP/1.1 404")
