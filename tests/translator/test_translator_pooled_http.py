"""The translator's HTTP/1.1 client (`translator/pooled_http.py`) against scripted servers.

Each server here is a few lines of asyncio that answer exactly as a test needs (reuse a
connection or close it, break off mid-answer, stay silent, refuse a tunnel), which a real
Bedrock does only sometimes. The end-to-end tests run the same layer against the simulator.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge.tls import ensure_self_signed
from translator.bedrock_client import BedrockRuntime
from translator.bedrock_errors import BedrockError
from translator.pooled_http import HttpFailure, PooledHttp
from translator.sigv4 import host_header

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Server:
    url: str
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request: head and Content-Length body (what PooledHttp sends)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


def answer(body: bytes, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n".encode() + extra + b"\r\n" + body


@asynccontextmanager
async def serving(handler: Handler, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server("")

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        yield server
    finally:
        listener.close()


def keep_answering(server_box: list[Server], body: bytes = b'{"ok":true}') -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            server_box[0].requests.append(await read_request(reader))
            writer.write(answer(body, extra=b"Content-Type: application/json\r\n"))
            await writer.drain()

    return handler


async def test_a_connection_is_reused_and_the_request_is_sent_as_given() -> None:
    box: list[Server] = []
    async with serving(keep_answering(box)) as server:
        box.append(server)
        http = PooledHttp(server.url)
        for _ in range(3):
            async with await http.post("/model/a%3Ab/converse", {"Authorization": "sig"}, b"{}") as response:
                assert response.status == 200
                assert response.headers["content-type"] == "application/json"
                assert await response.read() == b'{"ok":true}'
        http.close()
    assert server.connections == 1
    assert len(server.requests) == 3
    host = server.url.removeprefix("http://")
    assert (
        server.requests[0]
        == (
            f"POST /model/a%3Ab/converse HTTP/1.1\r\nHost: {host}\r\nAuthorization: sig\r\n"
            "Content-Length: 2\r\n\r\n{}"
        ).encode()
    )


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    async def one_answer_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"done"))  # keep-alive by HTTP/1.1's rules, but closed right after
        await writer.drain()

    async with serving(one_answer_per_connection) as server:
        http = PooledHttp(server.url)
        for _ in range(3):
            response = await http.post("/x", {}, b"")
            assert await response.read() == b"done"
            await asyncio.sleep(0.05)  # the close reaches the client while the connection is idle
        http.close()
    assert server.connections == 3


async def test_a_chunked_answer_is_relayed_as_it_arrives() -> None:
    release = asyncio.Event()

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await release.wait()  # the second part only after the client has the first
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()
        await read_request(reader)  # the connection stays usable

    async with serving(chunked) as server:
        http = PooledHttp(server.url)
        response = await http.post("/x", {}, b"")
        seen = []
        async for chunk in response.chunks():
            seen.append(chunk)
            release.set()
        http.close()
    assert seen == [b"first", b"second"]


async def test_an_answer_that_breaks_off_fails_after_what_arrived() -> None:
    async def breaks_off(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()

    async with serving(breaks_off) as server:
        http = PooledHttp(server.url)
        response = await http.post("/x", {}, b"")
        seen = []
        with pytest.raises(HttpFailure, match="closed before the answer was complete"):
            async for chunk in response.chunks():
                seen.append(chunk)
        http.close()
    assert seen == [b"partial"]


async def test_a_body_without_a_length_ends_with_the_connection() -> None:
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()

    async with serving(until_close) as server:
        http = PooledHttp(server.url)
        response = await http.post("/x", {}, b"")
        assert await response.read() == b"all of it"
        http.close()


async def test_silence_longer_than_the_read_timeout_fails() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with serving(silent) as server:
        http = PooledHttp(server.url, read_timeout_s=0.2)
        with pytest.raises(HttpFailure, match=r"no data from the server for 0\.2 s"):
            await http.post("/x", {}, b"")
        http.close()


async def test_an_unparsable_answer_fails() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with serving(garbage) as server:
        http = PooledHttp(server.url)
        with pytest.raises(HttpFailure, match="unparsable HTTP answer"):
            await http.post("/x", {}, b"")
        http.close()


async def test_nobody_listening_fails_to_connect() -> None:
    http = PooledHttp("http://127.0.0.1:9")
    with pytest.raises(HttpFailure, match=r"cannot connect \(ConnectionRefusedError\)"):
        await http.post("/x", {}, b"")


async def test_a_unix_socket_is_reached_instead_of_the_urls_host(tmp_path: Path) -> None:
    """The meter on one machine: every connection goes to its socket, the URL is the Host."""
    requests: list[bytes] = []
    connections = 0

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                requests.append(await read_request(reader))
                writer.write(answer(b"committed"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    path = tmp_path / "meter.sock"
    listener = await asyncio.start_unix_server(on_connection, str(path))
    try:
        http = PooledHttp("http://meter", unix_socket=path, connect_timeout_s=2)
        for _ in range(2):
            response = await http.post("/events", {"Content-Type": "application/json"}, b"[]")
            assert (response.status, await response.read()) == (200, b"committed")
        http.close()
    finally:
        listener.close()
    assert connections == 1  # kept alive and reused, as over TCP
    assert requests[0] == (
        b"POST /events HTTP/1.1\r\nHost: meter\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n[]"
    )

    gone = PooledHttp("http://meter", unix_socket=tmp_path / "nobody.sock")
    with pytest.raises(HttpFailure, match=r"cannot connect \(FileNotFoundError\)"):
        await gone.post("/events", {}, b"")


@pytest.mark.parametrize(
    ("url", "proxy"),
    [("https://meter", None), ("http://meter", "http://proxy:3128")],
    ids=["tls", "proxy"],
)
def test_a_unix_socket_is_plain_http_without_a_proxy(tmp_path: Path, url: str, proxy: str | None) -> None:
    with pytest.raises(ValueError, match="a Unix socket is reached over plain HTTP, without a proxy"):
        PooledHttp(url, unix_socket=tmp_path / "meter.sock", proxy=proxy)


def test_only_http_proxies_are_accepted() -> None:
    with pytest.raises(ValueError, match="unsupported proxy scheme 'socks5'"):
        PooledHttp("https://bedrock-runtime.us-east-1.amazonaws.com", proxy="socks5://proxy:1080")


@dataclass
class Tunnels:
    connects: list[bytes] = field(default_factory=list)


def connect_proxy(tunnels: Tunnels, *, refuse: bool = False) -> Handler:
    """A forward proxy that answers CONNECT (or refuses it with 407) and then pipes bytes."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        tunnels.connects.append(head)
        if refuse:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        host, port = head.split(b" ")[1].decode().rsplit(":", 1)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    return handler


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key, _ = ensure_self_signed(tmp_path)
    return cert, key


async def test_https_goes_through_a_connect_tunnel_with_the_proxys_credentials(
    tls_files: tuple[Path, Path],
) -> None:
    cert, key = tls_files
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    box: list[Server] = []
    tunnels = Tunnels()
    async with (
        serving(keep_answering(box), tls=server_tls) as bedrock,
        serving(connect_proxy(tunnels)) as proxy,
    ):
        box.append(bedrock)
        proxy_url = proxy.url.replace("http://", "http://user:p%40ss@")
        http = PooledHttp(bedrock.url, proxy=proxy_url, ca_bundle=str(cert))
        for _ in range(2):
            response = await http.post("/model/m/converse", {"Authorization": "sig"}, b"{}")
            assert await response.read() == b'{"ok":true}'
        http.close()
    target = bedrock.url.removeprefix("https://")
    # One tunnel, reused; the proxy's credentials go in CONNECT, never to Bedrock.
    credentials = "Proxy-Authorization: Basic dXNlcjpwQHNz"  # user:p@ss
    assert tunnels.connects == [
        f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{credentials}\r\n\r\n".encode()
    ]
    assert len(bedrock.requests) == 2
    assert all(b"Proxy-Authorization" not in request for request in bedrock.requests)
    assert bedrock.requests[0].startswith(b"POST /model/m/converse HTTP/1.1\r\n")


async def test_a_refused_tunnel_fails_with_the_proxys_status(tls_files: tuple[Path, Path]) -> None:
    tunnels = Tunnels()
    async with serving(connect_proxy(tunnels, refuse=True)) as proxy:
        http = PooledHttp("https://bedrock-runtime.us-east-1.amazonaws.com", proxy=proxy.url)
        with pytest.raises(HttpFailure, match=r"the proxy refused the tunnel \(HTTP 407\)"):
            await http.post("/x", {}, b"")
    assert len(tunnels.connects) == 1


async def test_a_certificate_that_is_not_trusted_is_refused(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    box: list[Server] = []
    async with serving(keep_answering(box), tls=server_tls) as bedrock:
        box.append(bedrock)
        http = PooledHttp(bedrock.url)  # the system's CAs only: the self-signed one is not among them
        with pytest.raises(HttpFailure, match=r"cannot connect \(SSLCertVerificationError\)"):
            await http.post("/x", {}, b"")
    assert bedrock.requests == []


async def test_reading_pauses_while_a_slow_reader_has_a_backlog() -> None:
    piece = b"x" * 65536
    pieces = 64  # 4 MiB: more than the 1 MiB buffered before reading pauses

    async def firehose(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(piece) * pieces}\r\n\r\n".encode())
        for _ in range(pieces):
            writer.write(piece)
            await writer.drain()

    async with serving(firehose) as server:
        http = PooledHttp(server.url)
        response = await http.post("/x", {}, b"")
        await asyncio.sleep(0.3)  # the server writes as fast as it can; the client reads nothing
        connection = response._connection
        assert connection._paused
        assert connection._buffered < 2 * 1024 * 1024
        received = 0
        async for chunk in response.chunks():
            received += len(chunk)
        http.close()
    assert received == len(piece) * pieces


async def test_closing_an_answer_mid_way_ends_the_relay_quietly_and_drops_the_connection() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"4\r\ntick\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)

    async with serving(endless) as server:
        http = PooledHttp(server.url)
        response = await http.post("/x", {}, b"")
        seen = 0
        async for _ in response.chunks():
            seen += 1
            if seen == 3:
                response.close()  # as the translator does when its client leaves
        assert seen == 3
        assert not response._connection.usable
        assert http._idle == []  # a half-read answer never goes back to the pool
        http.close()


async def test_bedrock_calls_trust_the_ca_bundle_of_the_aws_configuration(
    tls_files: tuple[Path, Path], aws_environment: pytest.MonkeyPatch
) -> None:
    """AWS_CA_BUNDLE (as boto3 reads it) is what the translator trusts for Bedrock's TLS."""
    cert, key = tls_files
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    box: list[Server] = []
    async with serving(
        keep_answering(box, b'{"output":{"message":{"content":[]}}}'), tls=server_tls
    ) as bedrock:
        box.append(bedrock)
        monkeypatch = aws_environment
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", bedrock.url)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
        async with BedrockRuntime.from_environment() as runtime:
            answer, _ = await runtime.converse("anthropic.claude-3-haiku-20240307-v1:0", b"{}")
        assert answer == {"output": {"message": {"content": []}}}
        monkeypatch.delenv("AWS_CA_BUNDLE")  # the system's CAs alone do not trust this server
        async with BedrockRuntime.from_environment() as runtime:
            with pytest.raises(BedrockError) as refused:
                await runtime.converse("anthropic.claude-3-haiku-20240307-v1:0", b"{}")
        assert refused.value.name == "ServiceUnavailableException"
        assert "SSLCertVerificationError" in refused.value.message
    assert len(bedrock.requests) == 1
    assert b"Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" in bedrock.requests[0]


@pytest.mark.parametrize(
    ("endpoint", "host"),
    [
        pytest.param(
            "https://bedrock-runtime.us-east-1.amazonaws.com:443",
            "bedrock-runtime.us-east-1.amazonaws.com",
            id="https-default-port",
        ),
        pytest.param("http://127.0.0.1:80", "127.0.0.1", id="http-default-port"),
        pytest.param("http://127.0.0.1:8080", "127.0.0.1:8080", id="other-port"),
    ],
)
def test_the_host_header_sent_is_the_one_signed(endpoint: str, host: str) -> None:
    # An endpoint naming its scheme's default port (AWS_ENDPOINT_URL_BEDROCK_RUNTIME=https://…:443)
    # is signed without it, as botocore signs it; a different Host would fail the signature.
    sent = PooledHttp(endpoint).request_bytes("/model/m/converse", {}, b"")
    assert sent.startswith(f"POST /model/m/converse HTTP/1.1\r\nHost: {host}\r\n".encode())
    assert host_header(*endpoint.split("://", 1)) == host
