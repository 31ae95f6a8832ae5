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
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import openai
import pytest
import yarl
from aiohttp import web
from local_ports import free_port
from stack_process import Stack, start_stack, stop_stack

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


@pytest.fixture(scope="module")
def outside() -> Iterator[tuple[Outside, int, int]]:
    """The proxy and the credential source, served from a thread; yields (state, ports)."""
    state = Outside()
    loop = asyncio.new_event_loop()
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

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield state, *ports
    for runner in runners:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


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
    client = openai.OpenAI(
        base_url=stack.base_url + "/v1",
        api_key=key,
        http_client=httpx.Client(verify=stack.verify, timeout=60),
        max_retries=0,
    )
    with client:
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


def test_the_simulator_never_goes_through_a_proxy(tmp_path: Path, database_url: str) -> None:
    """With --bedrock-simulator, a proxy from the user's environment is not used for loopback."""
    dead_proxy = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    stack = start_stack(tmp_path, database_url, env={"HTTP_PROXY": dead_proxy, "HTTPS_PROXY": dead_proxy})
    try:
        key = stack.create_key("sim-no-proxy", month_quota=5)["api_key"]
        assert _chat(stack, key).choices[0].message.content
    finally:
        assert not stop_stack(stack)
