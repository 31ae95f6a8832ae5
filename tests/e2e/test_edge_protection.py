"""The edge holds against floods, slow clients and a second stack, end to end (`brproxy up`).

One stack with small limits (BRPROXY_*): a source address that opens connections past the
ceiling keeps only its share while a client from another address makes metered model calls;
connections that never complete a TLS handshake, or trickle their headers, are closed; with
authz stopped, model and admin calls get a 503 in their own client's shape. A second
`brproxy up` on the same port refuses to start and leaves the first serving.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import httpx2
import openai
import orjson
import psutil
import pytest
from e2e_clients import openai_sdk
from local_ports import free_port
from raw_connections import closed_by_the_edge, held_open, trickle
from stack_process import BOOTSTRAP_KEY, Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

CEILING = 16
PER_SOURCE = 4
EDGE_SETTINGS = {
    "BRPROXY_MAX_CONNECTIONS": str(CEILING),
    "BRPROXY_MAX_CONNECTIONS_PER_SOURCE": str(PER_SOURCE),
    "BRPROXY_TLS_HANDSHAKE_TIMEOUT_S": "2",
    "BRPROXY_REQUEST_HEADERS_TIMEOUT_S": "2",
    "BRPROXY_IDLE_TIMEOUT_S": "3",
}
AUTHZ_UNAVAILABLE = "The authorization service is unavailable; try again in a moment."


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("brproxy"), database_url, env=EDGE_SETTINGS)
    try:
        yield running
    finally:
        assert not stop_stack(running)


@pytest.fixture(scope="module")
def key(stack: Stack) -> str:
    api_key: str = stack.create_key("edge-protection", month_quota=5)["api_key"]
    return api_key


def _port(stack: Stack) -> int:
    return int(stack.base_url.rsplit(":", 1)[1])


def _context(stack: Stack) -> ssl.SSLContext:
    assert isinstance(stack.verify, ssl.SSLContext)
    return stack.verify


def _openai_from(stack: Stack, key: str, source: str) -> openai.OpenAI:
    transport = httpx.HTTPTransport(local_address=source, verify=_context(stack))
    http = httpx.Client(transport=transport, timeout=30)
    return openai.OpenAI(base_url=stack.base_url + "/v1", api_key=key, http_client=http, max_retries=0)


def _anthropic(stack: Stack, key: str) -> anthropic.Anthropic:
    http = httpx2.Client(verify=_context(stack), timeout=30)
    return anthropic.Anthropic(base_url=stack.base_url, api_key=key, http_client=http, max_retries=0)


def _chat(client: openai.OpenAI) -> str:
    answer = client.chat.completions.create(
        model="claude-3-haiku", messages=[{"role": "user", "content": "hi [[sim:tokens=2]]"}]
    )
    content = answer.choices[0].message.content
    assert content
    return content


def test_a_flood_from_one_address_leaves_every_other_client_served(stack: Stack, key: str) -> None:
    # Client A: idle TCP connections (not one TLS byte), up to the ceiling and past it. From
    # an address nothing else here uses, so that its share is all its own.
    def connect() -> socket.socket:
        return socket.create_connection(
            ("127.0.0.1", _port(stack)), timeout=10, source_address=("127.0.0.3", 0)
        )

    with held_open(connect, CEILING + 4) as flood:
        closed = closed_by_the_edge(flood, within=1)
        assert len(closed) == len(flood) - PER_SOURCE

        # Client B, from another address, makes model calls through Envoy, authz and the
        # translator, and they are metered.
        started = time.monotonic()
        with _openai_from(stack, key, "127.0.0.2") as client:
            assert _chat(client)
            assert _chat(client)
        assert time.monotonic() - started < 10
    rows = stack.wait_for("SELECT count(*) AS n FROM threads HAVING count(*) >= 2")
    assert rows and rows[0]["n"] >= 2


def test_silent_and_trickling_connections_are_closed(stack: Stack) -> None:
    with socket.create_connection(("127.0.0.1", _port(stack)), timeout=10) as silent:
        started = time.monotonic()
        assert closed_by_the_edge([silent], within=8) == [silent]
        assert 1.5 < time.monotonic() - started < 5  # BRPROXY_TLS_HANDSHAKE_TIMEOUT_S=2

    raw = socket.create_connection(("127.0.0.1", _port(stack)), timeout=10)
    with _context(stack).wrap_socket(raw, server_hostname="localhost") as slow:
        slow.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\n")
        # A header line every 0.3 s: 18 s if nothing stops it.
        answer, waited = trickle(slow, lambda line: b"X-Slow-%d: x\r\n" % line, every=0.3, within=18)
    assert waited < 6, f"a request trickling its headers was open for {waited:.1f}s"
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    error = orjson.loads(body)  # no path was read: every client's fields are there
    assert error["type"] == "error" and error["success"] is False
    assert error["error"]["message"] == error["data"] == "The request's headers did not arrive within 2 s."


def test_authz_down_is_a_503_in_each_clients_shape(stack: Stack, key: str) -> None:
    authz = stack.processes("-m authz")
    assert authz
    for process in authz:
        process.send_signal(signal.SIGSTOP)  # alive but silent: Envoy's check times out
    try:
        with openai_sdk(stack, key) as client, pytest.raises(openai.APIStatusError) as openai_error:
            _chat(client)
        assert openai_error.value.status_code == 503
        assert openai_error.value.body == {
            "message": AUTHZ_UNAVAILABLE,
            "type": "server_error",
            "param": None,
            "code": "service_unavailable",
        }

        with _anthropic(stack, key) as client, pytest.raises(anthropic.APIStatusError) as anthropic_error:
            client.messages.create(
                model="claude-3-haiku", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
        assert anthropic_error.value.status_code == 503
        assert anthropic_error.value.body == {
            "type": "error", "error": {"type": "overloaded_error", "message": AUTHZ_UNAVAILABLE},
        }  # fmt: skip

        answer = stack.admin("GET", "/admin/api-key/list")
        assert answer.status_code == 503
        assert answer.json() == {"success": False, "data": AUTHZ_UNAVAILABLE}
    finally:
        for process in authz:
            process.send_signal(signal.SIGCONT)
    with openai_sdk(stack, key) as client:
        assert _chat(client)  # and back


def test_authz_refusals_keep_their_own_bodies(stack: Stack) -> None:
    with openai_sdk(stack, "br-not-a-key") as client, pytest.raises(openai.AuthenticationError) as refused:
        _chat(client)
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["type"] == "invalid_request_error"
    assert refused.value.body["message"]
    answer = stack.admin("GET", "/admin/api-key/list", key="br-not-a-key")
    assert answer.status_code == 401
    assert answer.json()["success"] is False


def _child_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BRPROXY_", "PGSQL_")) and k != "DATABASE_URL"
    }
    env["ADMIN_API_KEY"] = BOOTSTRAP_KEY
    return env


def _left_running(part: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if part in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


def test_a_second_stack_on_the_same_port_refuses_to_start(
    stack: Stack, key: str, tmp_path: Path, database_url: str
) -> None:
    second_dir = tmp_path / "second"
    second = subprocess.Popen(
        [sys.executable, "-m", "brproxy", "up", "--bedrock-simulator", "--port", str(_port(stack)),
         "--data-dir", str(second_dir)],
        env={**_child_env(), "DATABASE_URL": database_url},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        output, _ = second.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        for child in psutil.Process(second.pid).children(recursive=True):
            child.kill()
        second.kill()
        output, _ = second.communicate()
        pytest.fail("a second `brproxy up` on a port in use kept running:\n" + output[-3000:])
    lines = output.splitlines()
    assert second.returncode == 1, output
    assert lines == [
        f"BRProxy stopped: port {_port(stack)} on 127.0.0.1 is already in use (another `brproxy up`, "
        "or another program); stop it or choose another --port"
    ], output
    assert not second_dir.exists()  # nothing was created, nothing started
    assert not _left_running(str(second_dir))

    # The first stack serves on, with its own certificate.
    with openai_sdk(stack, key) as client:
        assert _chat(client)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BRPROXY_REQUEST_HEADERS_TIMEOUT_S", "0"),
        ("BRPROXY_IDLE_TIMEOUT_S", "nan"),
        ("BRPROXY_TLS_HANDSHAKE_TIMEOUT_S", "1e400"),
        ("BRPROXY_MAX_CONNECTIONS_PER_SOURCE", "0"),
    ],
)
def test_an_invalid_edge_setting_is_refused_before_anything_starts(
    tmp_path: Path, variable: str, value: str
) -> None:
    try:
        result = subprocess.run(
            [sys.executable, "-m", "brproxy", "up", "--bedrock-simulator", "--port", str(free_port()),
             "--data-dir", str(tmp_path / "data")],
            env={**_child_env(), variable: value}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except subprocess.TimeoutExpired as still_running:
        pytest.fail(f"{variable}={value} was accepted: {still_running.output!r}"[-2000:])
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{variable}: Input should be" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()
