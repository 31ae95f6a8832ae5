"""Envoy's own replies come back in the client's error shape, through a real Envoy.

The generated bootstrap runs in Envoy with a stand-in authz and upstream (edge_process.py).
Every reply Envoy makes itself (malformed request 400, unknown route 404, slow headers 408,
body over the limit 413, HTTP/1.0 426, headers too large 431, authz or a service unreachable
503) must be OpenAI's error object on `/v1/*`, Anthropic's on `/v1/messages*`, the envelope
on `/admin` and `/user`, with its status unchanged; authz's own refusals pass untouched.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from edge_process import (
    REFUSED_KEY,
    STARTING_KEY,
    STARTING_MESSAGE,
    RunningEdge,
    running_edge,
    stand_in_authz,
    stand_in_upstream,
)
from local_ports import free_port

from core.admission import MAX_BODY_BYTES
from core.errors import error_body

AUTHZ_UNAVAILABLE = "The authorization service is unavailable; try again in a moment."


def openai_shaped(body: Any) -> str:
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, body
    assert isinstance(error["type"], str) and error["type"]
    message: str = error["message"]
    return message


def anthropic_shaped(body: Any) -> str:
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"}, body
    assert isinstance(body["error"]["type"], str) and body["error"]["type"]
    message: str = body["error"]["message"]
    return message


def envelope_shaped(body: Any) -> str:
    assert set(body) == {"success", "data"} and body["success"] is False, body
    message: str = body["data"]
    return message


Shape = Callable[[Any], str]
PATHS: list[tuple[str, Shape]] = [
    ("/v1/chat/completions", openai_shaped),
    ("/v1/embeddings", openai_shaped),
    ("/v1/messages", anthropic_shaped),
    ("/v1/messages/count_tokens", anthropic_shaped),
    ("/admin/api-key/list", envelope_shaped),
    ("/user/api-key/mine", envelope_shaped),
]
SHAPED_PATHS = [pytest.param(path, shape, id=path) for path, shape in PATHS]
MODEL_CALL_PATHS = [pytest.param(path, shape, id=path) for path, shape in PATHS if path.startswith("/v1/")]
"""Where the edge buffers the body (for authz), and so where it answers 413 itself."""


def shaped(answer: httpx.Response, status: int, shape: Shape) -> str:
    """The message of a JSON error of `status` in `shape`."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    message = shape(orjson.loads(answer.content))
    assert message.strip(), answer.text
    return message


def every_shape(body: Any) -> str:
    """A body for a request whose path Envoy never read: every client finds its fields."""
    assert body["type"] == "error" and body["success"] is False, body
    assert {"message", "type", "param", "code"} <= set(body["error"]), body
    assert body["data"] == body["error"]["message"]
    message: str = body["data"]
    return message


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEdge]:
    with (
        stand_in_authz() as authz,
        stand_in_upstream() as upstream,
        running_edge(tmp_path_factory.mktemp("edge"), tls=True, authz=authz, upstream=upstream) as running,
    ):
        yield running


def client(edge: RunningEdge, **options: Any) -> httpx.Client:
    return httpx.Client(base_url=edge.base_url, verify=edge.ssl_context(), timeout=30, **options)


def raw_exchange(edge: RunningEdge, data: bytes) -> tuple[bytes, Any]:
    """Send `data` as it is (over TLS); the status line and the JSON body of the answer."""
    with edge.connect_tls() as connection:
        # Envoy may answer and close before it has read everything.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.sendall(data)
        answer = b""
        while True:
            try:
                chunk = connection.recv(65536)
            except (ConnectionResetError, OSError):
                break
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), answer
    return head.split(b"\r\n", 1)[0], orjson.loads(body)


# --- replies to requests Envoy read as far as their path ---------------------------------


@pytest.mark.parametrize(("path", "shape"), MODEL_CALL_PATHS)
def test_a_body_over_the_limit_is_413_in_the_clients_shape(
    edge: RunningEdge, path: str, shape: Shape
) -> None:
    too_big = b"x" * (MAX_BODY_BYTES + 1)
    with client(edge) as http:
        answer = http.post(path, content=too_big, headers={"authorization": "Bearer br-k"})
        assert shaped(answer, 413, shape) == "The request body is larger than 32 MiB."
        # Of unknown length (chunked): refused all the same once past the limit.
        chunks = (too_big[i : i + 2**20] for i in range(0, len(too_big), 2**20))
        answer = http.post(path, content=chunks, headers={"authorization": "Bearer br-k"})
        assert shaped(answer, 413, shape) == "The request body is larger than 32 MiB."


def test_413_carries_each_clients_error_type(edge: RunningEdge) -> None:
    too_big = b"x" * (MAX_BODY_BYTES + 1)
    with client(edge) as http:
        anthropic = http.post("/v1/messages", content=too_big).json()
        openai = http.post("/v1/chat/completions", content=too_big).json()
    assert anthropic["error"]["type"] == "request_too_large"
    assert openai["error"]["type"] == "invalid_request_error"
    assert openai["error"]["code"] == "request_too_large"


def test_a_body_at_the_limit_goes_through(edge: RunningEdge) -> None:
    with client(edge) as http:
        answer = http.post("/v1/chat/completions", content=b"x" * MAX_BODY_BYTES)
    assert answer.status_code == 200
    assert answer.json()["upstream"] == "answered"


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/", openai_shaped),
        ("/no-such-route", openai_shaped),
        ("/v1", openai_shaped),
        ("/admin", envelope_shaped),
        ("/user", envelope_shaped),
        ("/health/more", openai_shaped),
    ],
)
def test_an_unknown_route_is_404_in_the_clients_shape(edge: RunningEdge, path: str, shape: Shape) -> None:
    with client(edge) as http:
        assert shaped(http.get(path), 404, shape) == "Unknown route."


@pytest.mark.parametrize(("path", "shape"), SHAPED_PATHS)
def test_authz_refusals_pass_untouched(edge: RunningEdge, path: str, shape: Shape) -> None:
    with client(edge) as http:
        answer = http.post(path, json={}, headers={"authorization": f"Bearer {REFUSED_KEY}"})
    assert answer.status_code == 401
    assert answer.json() == error_body(path, 401, "Invalid API key.")
    assert shape(answer.json()) == "Invalid API key."


@pytest.mark.parametrize(("path", "shape"), SHAPED_PATHS)
def test_authz_plain_503_is_shaped_with_its_message(edge: RunningEdge, path: str, shape: Shape) -> None:
    with client(edge) as http:
        answer = http.post(path, json={}, headers={"authorization": f"Bearer {STARTING_KEY}"})
    assert shaped(answer, 503, shape) == STARTING_MESSAGE


@pytest.mark.parametrize(("path", "shape"), SHAPED_PATHS)
def test_authz_unreachable_is_503_in_the_clients_shape(tmp_path: Path, path: str, shape: Shape) -> None:
    with (
        stand_in_upstream() as upstream,
        running_edge(tmp_path, tls=True, authz=free_port(), upstream=upstream) as edge,
        client(edge) as http,
    ):
        answer = http.post(path, json={}, headers={"authorization": "Bearer br-k"})
    assert shaped(answer, 503, shape) == AUTHZ_UNAVAILABLE


def test_a_service_unreachable_is_503_in_the_clients_shape(tmp_path: Path) -> None:
    with (
        stand_in_authz() as authz,
        running_edge(tmp_path, tls=True, authz=authz, upstream=free_port()) as edge,
        client(edge) as http,
    ):
        for path, shape in PATHS:
            answer = http.post(path, json={}, headers={"authorization": "Bearer br-k"})
            assert "upstream connect error" in shaped(answer, 503, shape)


def test_over_http2_the_replies_are_shaped_too(edge: RunningEdge) -> None:
    with client(edge, http2=True) as http:
        answer = http.post("/v1/messages", content=b"x" * (MAX_BODY_BYTES + 1))
        assert answer.http_version == "HTTP/2"
        assert shaped(answer, 413, anthropic_shaped) == "The request body is larger than 32 MiB."
        answer = http.get("/admin")
        assert shaped(answer, 404, envelope_shaped) == "Unknown route."


# --- replies to requests Envoy could not read as far as their path -----------------------


def test_a_malformed_request_is_400_readable_by_every_client(edge: RunningEdge) -> None:
    for request in [
        b"GARBAGE\r\n\r\n",
        b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n",
    ]:
        status, body = raw_exchange(edge, request)
        assert status == b"HTTP/1.1 400 Bad Request"
        assert every_shape(body).startswith("Malformed HTTP request (")


def test_headers_too_large_are_431_readable_by_every_client(edge: RunningEdge) -> None:
    large = b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nX-Large: " + b"a" * 70_000 + b"\r\n\r\n"
    many = b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n" + b"".join(
        b"X-Many-%d: a\r\n" % n for n in range(120)
    )
    for request in (large, many + b"\r\n"):
        status, body = raw_exchange(edge, request)
        assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
        assert every_shape(body) == "The request's headers are too large (at most 60 KiB and 100 headers)."


def test_http_1_0_is_426_readable_by_every_client(edge: RunningEdge) -> None:
    status, body = raw_exchange(edge, b"GET /v1/models HTTP/1.0\r\n\r\n")
    assert status == b"HTTP/1.1 426 Upgrade Required"
    assert every_shape(body) == "HTTP/1.0 is not supported: use HTTP/1.1 or HTTP/2."


def test_nothing_envoy_answers_is_plain_text(edge: RunningEdge) -> None:
    """A sweep of odd requests: whatever Envoy answers itself is JSON."""
    odd = [
        b"GET /%zz HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET /v1/../admin HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\nHost: local\x00host\r\n\r\n",
        b"GET /admin\x00 HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello\r\n\r\n",
    ]
    for request in odd:
        with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as plain_on_tls:
            plain_on_tls.sendall(request)  # not TLS at all: the handshake fails, no HTTP answer
            assert plain_on_tls.recv(100)[:1] in (b"", b"\x15")
        status, body = raw_exchange(edge, request)
        assert status.split(b" ")[1] >= b"400", (request, status)
        assert isinstance(body, dict), (request, body)


def test_a_transfer_encoding_envoy_does_not_know_is_501_readable_by_every_client(edge: RunningEdge) -> None:
    for path in ("/v1/messages", "/admin/api-key/list", "/user/api-key/mine"):
        request = f"POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        status, body = raw_exchange(edge, request.encode())
        assert status == b"HTTP/1.1 501 Not Implemented"
        assert every_shape(body).startswith("The edge cannot handle this request (")


@pytest.mark.parametrize("path", ["/v1/chat%00/completions", "/admin/%00", "/v1/messages#fragment"])
def test_a_refusal_without_envoys_own_text_still_says_why(edge: RunningEdge, path: str) -> None:
    status, body = raw_exchange(edge, f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    assert status.startswith(b"HTTP/1.1 400")
    message = body["data"] if "data" in body else body["error"]["message"]
    assert message.startswith("The edge refused the request: ") and "(" in message, body
