"""The edge's ceiling on open client connections (`BRPROXY_MAX_CONNECTIONS`), end to end.

`brproxy up` with a ceiling of 3: two idle TLS connections and one SDK client fill it; the
SDK's calls go through Envoy, authz and the translator and are metered in Postgres; a fourth
connection is closed by Envoy, and the SDK's own connection keeps working. An invalid
ceiling is refused before anything starts, naming the variable.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from e2e_clients import openai_sdk
from local_ports import free_port
from stack_process import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

CEILING = 3


def _tls_connection(stack: Stack) -> ssl.SSLSocket:
    """A TLS connection to the edge, handshake done (so Envoy has accepted and counted it)."""
    assert isinstance(stack.verify, ssl.SSLContext)
    port = int(stack.base_url.rsplit(":", 1)[1])
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return stack.verify.wrap_socket(raw, server_hostname="localhost")


def _chat(client: object) -> str:
    answer = client.chat.completions.create(  # type: ignore[attr-defined]
        model="claude-3-haiku", messages=[{"role": "user", "content": "hi [[sim:tokens=2]]"}]
    )
    content: str = answer.choices[0].message.content
    return content


def test_connections_over_the_ceiling_are_closed_and_the_open_ones_keep_serving_model_calls(
    tmp_path: Path, database_url: str
) -> None:
    stack = start_stack(tmp_path, database_url, env={"BRPROXY_MAX_CONNECTIONS": str(CEILING)})
    held: list[ssl.SSLSocket] = []
    try:
        key = stack.create_key("ceiling", month_quota=5)
        held = [_tls_connection(stack) for _ in range(CEILING - 1)]
        with openai_sdk(stack, key["api_key"]) as client:
            assert _chat(client)  # the third connection: the ceiling is now reached

            with pytest.raises(OSError):  # ssl.SSLError and ConnectionError are both
                over = _tls_connection(stack)  # accepted, then closed by Envoy mid-handshake
                over.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
                if not over.recv(1024):
                    raise ConnectionError("closed by the edge")

            assert _chat(client)  # the open connection is untouched
        rows = stack.wait_for(
            "SELECT count(*) AS n FROM threads WHERE key_id = $1 HAVING count(*) >= 2", key["id"]
        )
        assert rows and rows[0]["n"] == 2  # both calls were metered
    finally:
        for connection in held:
            connection.close()
        assert not stop_stack(stack)


@pytest.mark.parametrize("value", ["0", "lots"])
def test_an_invalid_ceiling_is_refused_before_anything_starts(tmp_path: Path, value: str) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BRPROXY_", "PGSQL_")) and k != "DATABASE_URL"
    }
    result = subprocess.run(
        [sys.executable, "-m", "brproxy", "up", "--bedrock-simulator", "--port", str(free_port()),
         "--data-dir", str(tmp_path / "data")],
        env={**env, "BRPROXY_MAX_CONNECTIONS": value, "ADMIN_API_KEY": "a-secret-that-must-not-show"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "brproxy: invalid configuration:" in result.stderr
    assert "BRPROXY_MAX_CONNECTIONS: Input should be" in result.stderr
    assert "Traceback" not in result.stderr
    assert "a-secret-that-must-not-show" not in result.stderr + result.stdout
    assert not (tmp_path / "data").exists()  # no database, no certificate: nothing started
    assert not [
        p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]
