"""The standard AWS environment, end to end: `brproxy up` without the simulator flag, its
translator configured only by environment variables, as in production:

- `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` names a Bedrock (here a standalone simulator);
- `HTTP_PROXY` names an outbound proxy (here a recording forward proxy);
- `AWS_CONTAINER_CREDENTIALS_FULL_URI` names a source of temporary credentials (here a local
  server, as ECS and EKS Pod Identity provide one), which expire and must be refreshed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import openai
import pytest
import yarl
from aiohttp import web
from e2e_clients import openai_sdk
from local_ports import free_port
from stack_process import Stack, start_stack, stop_stack

from edge.tls import ensure_self_signed

pytestmark = pytest.mark.e2e

ACCESS_KEY = "ASIAE2ECONTAINER"
SECRET = "e2e-container-secret"


@dataclass
class Outside:
    """What stands around BRProxy in production: an outbound proxy and a credential source."""

    proxied: list[dict[str, str]] = field(default_factory=list)
    """Headers of each request the proxy forwarded, with its absolute URL under "url"."""
    proxy_refuses: bool = False
    credentials_issued: int = 0
    credentials_fail: bool = False
    credentials_minutes: int = 5
    """Lifetime of the credentials issued: 5 is inside botocore's mandatory-refresh window."""

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        if self.proxy_refuses:
            return web.Response(status=502, text="proxy: upstream refused")
        url = request.raw_path  # a forward proxy gets the absolute URL
        headers = {k: v for k, v in request.headers.items() if k.lower() != "proxy-authorization"}
        self.proxied.append({"url": url, **headers})
        async with (
            aiohttp.ClientSession() as session,
            # encoded=True: the path exactly as signed (%3A in a model id stays %3A).
            session.request(
                request.method, yarl.URL(url, encoded=True), headers=headers, data=await request.read()
            ) as answer,
        ):
            return web.Response(
                status=answer.status, body=await answer.read(), content_type=answer.content_type
            )

    async def credentials(self, _request: web.Request) -> web.Response:
        if self.credentials_fail:
            return web.Response(status=500, text="credential source down")
        self.credentials_issued += 1
        expiry = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=self.credentials_minutes)
        return web.json_response(
            {
                "AccessKeyId": ACCESS_KEY,
                "SecretAccessKey": SECRET,
                "Token": f"session-token-{self.credentials_issued}",
                "Expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )


@contextmanager
def _loop_in_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a thread, for servers that stand outside the stack."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture(scope="module")
def outside() -> Iterator[tuple[Outside, int, int]]:
    """The proxy and the credential source, served from a thread; yields (state, ports)."""
    state = Outside()
    runners: list[web.AppRunner] = []
    ports = (free_port(), free_port())

    async def start() -> None:
        for handler, port in ((state.proxy, ports[0]), (state.credentials, ports[1])):
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handler)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)

    with _loop_in_thread() as loop:
        asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        yield state, *ports
        for runner in runners:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)


@pytest.fixture(scope="module")
def simulator() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bedrock_simulator", "--port", str(port),
         "--access-key-id", ACCESS_KEY, "--secret-access-key", SECRET, "--region", "eu-west-1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def aws_stack(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    outside: tuple[Outside, int, int],
    simulator: str,
) -> Iterator[Stack]:
    stack = start_stack(
        tmp_path_factory.mktemp("aws-env"), database_url, env=aws_env(outside, simulator), simulator=False
    )
    try:
        yield stack
    finally:
        assert not stop_stack(stack)


def aws_env(outside: tuple[Outside, int, int], simulator: str) -> dict[str, str | None]:
    """The stack's environment: Bedrock, credentials and proxy all from the AWS configuration."""
    _, proxy_port, credentials_port = outside
    # Nothing of this machine's AWS configuration but its CA bundle (a proxy may need it).
    inherited = [name for name in os.environ if name.startswith("AWS_") and name != "AWS_CA_BUNDLE"]
    aws: dict[str, str | None] = dict.fromkeys(inherited)
    return {
        **aws,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": simulator,
        "AWS_REGION": "eu-west-1",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://127.0.0.1:{credentials_port}/credentials",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "HTTP_PROXY": f"http://proxy-user:proxy-password@127.0.0.1:{proxy_port}",
        "NO_PROXY": "",
    }


def _chat(stack: Stack, key: str) -> Any:
    with openai_sdk(stack, key) as client:
        return client.chat.completions.create(
            model="claude-3-haiku", messages=[{"role": "user", "content": "hello [[sim:tokens=3]]"}]
        )


def _502_while(stack: Stack, key: str, state: Outside, failure: str) -> dict[str, Any]:
    """The OpenAI error body of a call made while `failure` (a flag of `state`) is on."""
    setattr(state, failure, True)
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            _chat(stack, key)
    finally:
        setattr(state, failure, False)
    assert caught.value.status_code == 502
    error = caught.value.body
    assert isinstance(error, dict) and error["type"] == "server_error"
    return error


def test_calls_go_through_the_proxy_signed_with_refreshed_container_credentials(
    aws_stack: Stack, outside: tuple[Outside, int, int], simulator: str
) -> None:
    state = outside[0]
    key = aws_stack.create_key("aws-env", month_quota=5)["api_key"]
    before = len(state.proxied)
    answers = [_chat(aws_stack, key) for _ in range(2)]
    assert all(a.choices[0].message.content for a in answers)
    calls = state.proxied[before:]
    assert len(calls) == 2
    for call in calls:
        assert call["url"].startswith(simulator + "/model/")
        assert f"Credential={ACCESS_KEY}/" in call["Authorization"]
        assert "/eu-west-1/bedrock/aws4_request" in call["Authorization"]
    # The credentials expire within botocore's mandatory window, so each call refreshed them:
    # two calls, two session tokens from the credential source.
    tokens = [call["X-Amz-Security-Token"] for call in calls]
    assert len(set(tokens)) == 2 and all(t.startswith("session-token-") for t in tokens)
    # The proxy's password never reaches a log line.
    assert "proxy-password" not in "".join(aws_stack.output)


def test_a_failing_credential_source_is_a_clean_502(
    aws_stack: Stack, outside: tuple[Outside, int, int]
) -> None:
    state = outside[0]
    key = aws_stack.create_key("aws-env-creds-down", month_quota=5)["api_key"]
    before = len(state.proxied)
    error = _502_while(aws_stack, key, state, "credentials_fail")
    assert error["message"] == "The gateway's AWS credentials were refused by Bedrock."
    logs = "".join(aws_stack.output)
    assert "credentials" in logs  # the operator is told why (botocore's warning)
    assert SECRET not in logs and "session-token-" not in logs  # but no credential is
    assert len(state.proxied) == before  # nothing was sent with expiring credentials
    assert _chat(aws_stack, key).choices[0].message.content  # and it recovers at once


def test_the_gateway_starts_while_the_credential_source_is_down_and_uses_it_once_back(
    tmp_path: Path, database_url: str, outside: tuple[Outside, int, int], simulator: str
) -> None:
    state = outside[0]
    state.credentials_fail = True
    try:
        stack = start_stack(tmp_path, database_url, env=aws_env(outside, simulator), simulator=False)
    except BaseException:
        state.credentials_fail = False
        raise
    try:
        key = stack.create_key("aws-env-late-creds", month_quota=5)["api_key"]
        try:
            with pytest.raises(openai.APIStatusError) as caught:
                _chat(stack, key)
        finally:
            state.credentials_fail = False  # the source is back
        assert caught.value.status_code == 502
        assert caught.value.body["message"] == "The gateway's AWS credentials were refused by Bedrock."  # type: ignore[index]
        deadline = time.monotonic() + 30  # the translator retries with backoff, at most 10 s apart
        while True:
            try:
                answer = _chat(stack, key)
                break
            except openai.APIStatusError as error:
                assert error.status_code == 502 and time.monotonic() < deadline
                time.sleep(0.5)
        assert answer.choices[0].message.content
        logs = "".join(stack.output)
        assert "loading AWS credentials failed (CredentialRetrievalError)" in logs
        assert "AWS credentials loaded" in logs
        assert SECRET not in logs and "session-token-" not in logs
    finally:
        assert not stop_stack(stack)


def test_a_proxy_that_refuses_is_a_clean_error(aws_stack: Stack, outside: tuple[Outside, int, int]) -> None:
    state = outside[0]
    key = aws_stack.create_key("aws-env-proxy-down", month_quota=5)["api_key"]
    assert _502_while(aws_stack, key, state, "proxy_refuses")["message"]


@dataclass
class Tunnel:
    """An HTTPS Bedrock endpoint (TLS in front of the simulator) and a CONNECT proxy to reach it."""

    endpoint: str
    proxy: str
    cert: Path
    connects: list[bytes] = field(default_factory=list)
    """The head of each CONNECT the proxy received."""
    requests_through_tls: int = 0
    """Connections whose TLS handshake succeeded (and so reached the simulator)."""


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        sink.close()


@pytest.fixture(scope="module")
def tunnel(tmp_path_factory: pytest.TempPathFactory, simulator: str) -> Iterator[Tunnel]:
    """Served from a thread: TLS with a self-signed certificate, then a forward proxy for CONNECT."""
    cert, key, _ = ensure_self_signed(tmp_path_factory.mktemp("bedrock-tls"))
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    simulator_port = int(simulator.rsplit(":", 1)[1])
    front_port, proxy_port = free_port(), free_port()
    state = Tunnel(
        f"https://127.0.0.1:{front_port}", f"http://tunnel-user:tunnel-password@127.0.0.1:{proxy_port}", cert
    )

    async def front(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.requests_through_tls += 1
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", simulator_port)
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        state.connects.append(head)
        host, port = head.split(b" ")[1].decode().rsplit(":", 1)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    async def start() -> list[asyncio.Server]:
        return [
            await asyncio.start_server(front, "127.0.0.1", front_port, ssl=server_tls),
            await asyncio.start_server(proxy, "127.0.0.1", proxy_port),
        ]

    async def stop(servers: list[asyncio.Server]) -> None:
        for server in servers:
            server.close()
            await server.wait_closed()

    with _loop_in_thread() as loop:
        servers = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        yield state
        asyncio.run_coroutine_threadsafe(stop(servers), loop).result(10)


def _tunnel_env(outside: tuple[Outside, int, int], simulator: str, tunnel: Tunnel) -> dict[str, str | None]:
    env = aws_env(outside, simulator)
    env.update(
        {
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": tunnel.endpoint,
            "HTTP_PROXY": None,
            "http_proxy": None,
            "HTTPS_PROXY": tunnel.proxy,
            "https_proxy": None,
            "AWS_CA_BUNDLE": str(tunnel.cert),
        }
    )
    return env


def test_https_bedrock_through_a_connect_proxy_trusting_the_aws_ca_bundle(
    tmp_path: Path, database_url: str, outside: tuple[Outside, int, int], simulator: str, tunnel: Tunnel
) -> None:
    stack = start_stack(tmp_path, database_url, env=_tunnel_env(outside, simulator, tunnel), simulator=False)
    try:
        created = stack.create_key("aws-env-https", month_quota=5)
        key = created["api_key"]
        before = len(tunnel.connects)
        answers = [_chat(stack, key) for _ in range(2)]
        assert all(answer.choices[0].message.content for answer in answers)
        target = tunnel.endpoint.removeprefix("https://")
        # One tunnel carried both calls (a pooled connection), with the proxy's credentials.
        assert len(tunnel.connects) == before + 1
        connect = tunnel.connects[-1].decode()
        assert connect.startswith(f"CONNECT {target} HTTP/1.1\r\n")
        assert "Proxy-Authorization: Basic " in connect
        assert "tunnel-password" not in "".join(stack.output)
        # Both calls billed, as any others are.
        billed = "SELECT count(*) AS n FROM threads WHERE key_id = $1 HAVING count(*) = 2"
        assert stack.wait_for(billed, created["id"])
    finally:
        assert not stop_stack(stack)


def test_an_https_endpoint_whose_certificate_is_not_trusted_is_a_clean_error(
    tmp_path: Path, database_url: str, outside: tuple[Outside, int, int], simulator: str, tunnel: Tunnel
) -> None:
    env = _tunnel_env(outside, simulator, tunnel)
    env["AWS_CA_BUNDLE"] = None  # the system's CAs do not know the self-signed certificate
    stack = start_stack(tmp_path, database_url, env=env, simulator=False)
    try:
        key = stack.create_key("aws-env-untrusted", month_quota=5)["api_key"]
        handshakes, connects = tunnel.requests_through_tls, len(tunnel.connects)
        with pytest.raises(openai.APIStatusError) as caught:
            _chat(stack, key)
        assert caught.value.status_code == 503
        error = caught.value.body
        assert isinstance(error, dict) and error["type"] == "server_error"
        assert len(tunnel.connects) == connects + 1  # through the proxy, as far as the handshake
        assert tunnel.requests_through_tls == handshakes  # which it refused: nothing was sent
    finally:
        assert not stop_stack(stack)


def test_the_simulator_never_goes_through_a_proxy(tmp_path: Path, database_url: str) -> None:
    """With --bedrock-simulator, a proxy from the user's environment is not used for loopback."""
    dead_proxy = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    stack = start_stack(tmp_path, database_url, env={"HTTP_PROXY": dead_proxy, "HTTPS_PROXY": dead_proxy})
    try:
        key = stack.create_key("sim-no-proxy", month_quota=5)["api_key"]
        assert _chat(stack, key).choices[0].message.content
    finally:
        assert not stop_stack(stack)
