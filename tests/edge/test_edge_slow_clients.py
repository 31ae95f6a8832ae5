"""The edge against floods and slow clients, with a real Envoy running the generated bootstrap.

Timeouts and limits are set small (the settings `brproxy up` reads from BRPROXY_*), so each
test takes seconds: one source address cannot take every connection, a connection that never
completes its TLS handshake, a request whose headers trickle in (slowloris) and an unused
keep-alive connection are closed, and none of that cuts a long, mostly silent stream.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from edge_process import STREAM_PATH, RunningEdge, running_edge, stand_in_authz, stand_in_upstream
from raw_connections import closed_by_the_edge, held_open, trickle

CEILING = 12
PER_SOURCE = 4
PER_SOURCE_LIMITED = {
    "max_connections": CEILING,
    "max_connections_per_source": PER_SOURCE,
    "tls_handshake_timeout_s": 60,  # connections are refused for their number, not their silence
}


@pytest.fixture
def services() -> Iterator[tuple[int, int]]:
    with stand_in_authz() as authz, stand_in_upstream() as upstream:
        yield authz, upstream


def _edge(tmp_path: Path, services: tuple[int, int], *, tls: bool = True, **settings: Any) -> Any:
    authz, upstream = services
    return running_edge(tmp_path, tls=tls, authz=authz, upstream=upstream, **settings)


def _seconds_until_closed(connection: socket.socket, limit: float) -> float | None:
    """Seconds until the edge closes `connection` (reading and dropping what it sends)."""
    started = time.monotonic()
    connection.settimeout(0.1)
    while time.monotonic() - started < limit:
        try:
            if not connection.recv(65536):
                return time.monotonic() - started
        except (TimeoutError, ssl.SSLWantReadError):
            continue
        except (ConnectionResetError, ssl.SSLError):
            return time.monotonic() - started
    return None


def _request_from(edge: RunningEdge, source: str, path: str = "/v1/models") -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source, verify=edge.ssl_context())
    with httpx.Client(transport=transport, base_url=edge.base_url, timeout=5) as client:
        return client.get(path, headers={"authorization": "Bearer br-anything"})


def test_one_source_cannot_take_every_connection_another_source_is_still_served(
    tmp_path: Path, services: tuple[int, int]
) -> None:
    # Client A opens idle TCP connections up to the ceiling and past it: no TLS bytes.
    with (
        _edge(tmp_path, services, **PER_SOURCE_LIMITED) as edge,
        held_open(lambda: edge.connect("127.0.0.1"), CEILING + 3) as flood,
    ):
        closed = closed_by_the_edge(flood, within=2)
        assert len(closed) == len(flood) - PER_SOURCE  # A keeps its share, no more

        # Client B, from another address, is served at once (two requests: two connections).
        for _ in range(2):
            started = time.monotonic()
            answer = _request_from(edge, "127.0.0.2")
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"upstream": "answered", "path": "/v1/models"}
            assert time.monotonic() - started < 2

        # A's connections within its share are untouched: one completes its handshake now.
        (kept, *_) = [c for c in flood if c not in closed]
        with edge.ssl_context().wrap_socket(kept, server_hostname="localhost") as tls:
            tls.sendall(b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer k\r\n\r\n")
            assert tls.recv(65536).startswith(b"HTTP/1.1 200")


def test_sources_sharing_a_bucket_share_its_limit_and_others_do_not(
    tmp_path: Path, services: tuple[int, int]
) -> None:
    """127.0.0.1 and 127.0.0.65 have the same last byte modulo 64: one limit for both."""
    with (
        _edge(tmp_path, services, **PER_SOURCE_LIMITED) as edge,
        held_open(lambda: edge.connect("127.0.0.1"), PER_SOURCE) as first,
    ):
        assert closed_by_the_edge(first, within=1) == []
        with edge.connect("127.0.0.65") as same_bucket:
            assert closed_by_the_edge([same_bucket], within=2) == [same_bucket]
        with edge.connect("127.0.0.66") as other_bucket:
            assert closed_by_the_edge([other_bucket], within=1) == []


def test_a_connection_that_never_completes_its_tls_handshake_is_closed(
    tmp_path: Path, services: tuple[int, int]
) -> None:
    with _edge(tmp_path, services, tls_handshake_timeout_s=1) as edge:
        with edge.connect() as silent:  # not one byte
            waited = _seconds_until_closed(silent, limit=8)
        assert waited is not None, "an idle TCP connection was still open after 8 s"
        assert 0.7 < waited < 4

        # One that trickles a ClientHello, a byte at a time, is closed all the same.
        with edge.connect() as trickling:
            started = time.monotonic()
            hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64
            try:
                for byte in hello:
                    trickling.sendall(bytes([byte]))
                    time.sleep(0.25)
                closed_at = None
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic() - started
            if closed_at is None:
                closed_at = time.monotonic() - started
                assert _seconds_until_closed(trickling, limit=0.5) is not None
            assert closed_at < 5


def test_headers_that_trickle_in_are_answered_408_and_the_connection_closed(
    tmp_path: Path, services: tuple[int, int]
) -> None:
    with _edge(tmp_path, services, request_headers_timeout_s=1) as edge, edge.connect_tls() as slow:
        slow.sendall(b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\n")
        # One header line every 0.3 s: 30 s if nothing stops it.
        answer, waited = trickle(slow, lambda line: b"X-Slow-%d: x\r\n" % line, every=0.3, within=30)
    assert waited < 4, f"a slowloris request was still open after {waited:.1f}s"
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert b"content-type: application/json" in head.lower()
    error = orjson.loads(body)
    assert error["error"]["message"] == "The request's headers did not arrive within 1 s."


def test_a_keep_alive_connection_nobody_uses_is_closed(tmp_path: Path, services: tuple[int, int]) -> None:
    with _edge(tmp_path, services, idle_timeout_s=1.5) as edge, edge.connect_tls() as idle:
        idle.sendall(b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer k\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")
        waited = _seconds_until_closed(idle, limit=12)
    assert waited is not None, "an unused keep-alive connection was still open after 12 s"
    # The idle timeout starts Envoy's drain: 5 s more (its drain_timeout, HTTP/2's grace
    # between two GOAWAY frames), then the close.
    assert 1.5 + 5 <= waited < 10


def test_over_plain_http_a_silent_connection_is_closed_by_the_idle_timeout(
    tmp_path: Path, services: tuple[int, int]
) -> None:
    with _edge(tmp_path, services, tls=False, idle_timeout_s=1.5) as edge, edge.connect() as silent:
        waited = _seconds_until_closed(silent, limit=8)
    assert waited is not None
    assert 1 < waited < 4


def test_a_long_stream_outlives_every_short_timeout(tmp_path: Path, services: tuple[int, int]) -> None:
    """Silences longer than the idle, headers, request and handshake timeouts: the stream goes on."""
    with _edge(
        tmp_path, services, tls_handshake_timeout_s=1, request_headers_timeout_s=1, idle_timeout_s=1,
        request_timeout_s=1,
    ) as edge:  # fmt: skip
        events = []
        started = time.monotonic()
        with (
            httpx.Client(verify=edge.ssl_context(), base_url=edge.base_url, timeout=30) as client,
            client.stream(
                "POST", f"{STREAM_PATH}?gap=2.5&events=4", json={}, headers={"authorization": "Bearer k"}
            ) as stream,
        ):
            assert stream.status_code == 200
            events = [line for line in stream.iter_lines() if line.startswith("data: ")]
        elapsed = time.monotonic() - started
    assert events == ["data: 0", "data: 1", "data: 2", "data: 3"]
    assert elapsed > 7


def test_a_body_that_trickles_in_is_cut_by_the_request_timeout(
    tmp_path: Path, services: tuple[int, int]
) -> None:
    """A body sent a few bytes at a time, to hold the edge's buffer for it, is cut (408)."""
    with _edge(tmp_path, services, request_timeout_s=2) as edge, edge.connect_tls() as slow:
        slow.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer k\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
        )
        answer, waited = trickle(slow, lambda _: b"{", every=0.2, within=10)
    assert waited < 6, f"a trickled body was still being taken after {waited:.1f}s"
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert orjson.loads(answer.partition(b"\r\n\r\n")[2])["error"]["type"] == "timeout_error"
