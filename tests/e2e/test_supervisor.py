"""`brproxy up` as a user runs it: embedded Postgres, TLS, restarts, Ctrl-C."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from certificates import served_certificate
from cryptography import x509
from local_ports import free_port
from stack_process import start_stack, stop_stack

from edge.tls import ensure_self_signed

pytestmark = pytest.mark.e2e


def test_embedded_postgres_by_default_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    stack = start_stack(data_dir, None)
    try:
        lines = stack.command_lines()
        for part in ("-m authz", "-m translator", "-m meter", "-m admin_api", "-m bedrock_simulator"):
            assert any(part in line for line in lines), f"no process for {part}: {lines}"
        assert any("envoy" in line and "envoy.json" in line for line in lines)
        assert any("postgres" in line and str(data_dir / "pgdata") in line for line in lines)
        assert stack.cert is not None and stack.cert.is_relative_to(data_dir)
        assert any("Generated a self-signed TLS certificate" in line for line in stack.output)
        assert any("BEDROCK SIMULATOR MODE" in line for line in stack.output)
        with stack.client() as client:
            assert client.get("/health").status_code == 200
        key = stack.create_key("persisted", balance=1)
        with stack.client() as client:  # a model call: Envoy asks authz, which admits it
            answer = client.post(
                "/v1/chat/completions",
                headers={"authorization": f"Bearer {key['api_key']}"},
                json={
                    "model": "claude-3-haiku",
                    "messages": [{"role": "user", "content": "hi [[sim:tokens=2]]"}],
                },
            )
        assert answer.status_code == 200, answer.text
    finally:
        leftovers = stop_stack(stack)
    assert not leftovers, f"left behind: {leftovers}"
    assert stack.process.returncode == 0
    # authz sets gRPC's experiments before gRPC loads; a name gRPC did not know would be
    # reported here, at every start.
    authz_lines = [line for line in stack.output if line.startswith("[authz]")]
    assert authz_lines and not [line for line in authz_lines if "experiment" in line.lower()], authz_lines
    # Envoy warns at start when nothing bounds its client connections; the edge sets a ceiling.
    # (After the ready line Envoy's "caught ENVOY_SIGTERM" at Ctrl-C is a warning too.)
    ready = next(i for i, line in enumerate(stack.output) if line.startswith("BRProxy is ready"))
    startup = stack.output[:ready]
    assert [line for line in startup if line.startswith("[envoy]")] == [], startup

    # A second start on the same data dir finds the same database, and the same certificate.
    again = start_stack(data_dir, None)
    try:
        assert not any("Generated a self-signed" in line for line in again.output)
        listed = again.admin("GET", "/admin/api-key/list").json()["data"]["items"]
        assert [item["id"] for item in listed if item["name"] == "persisted"] == [key["id"]]
    finally:
        assert not stop_stack(again, signal.SIGTERM)


def test_a_killed_child_is_restarted_and_named(stack: Any) -> None:
    translator = stack.processes("-m translator")[0]
    translator.kill()

    def restarted() -> bool:
        others = stack.processes("-m translator")
        if not others or others[0].pid == translator.pid:
            return False
        with stack.client() as client:
            return client.get("/health").status_code == 200

    deadline = time.monotonic() + 20
    while not restarted():
        assert time.monotonic() < deadline, "the translator was not restarted:\n" + "".join(
            stack.output[-30:]
        )
        time.sleep(0.2)
    assert any("translator killed by SIGKILL; restarting it in" in line for line in stack.output)
    key = stack.create_key("after-restart", month_quota=1)
    with stack.client(key["api_key"]) as client:
        reply = client.post(
            "/v1/chat/completions",
            json={"model": "claude-3-haiku", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert reply.status_code == 200, reply.text


def test_a_child_that_keeps_dying_stops_the_stack_naming_it(tmp_path: Path, database_url: str) -> None:
    import subprocess
    import sys

    # Something that is no socket where the meter's socket goes: the meter never replaces it.
    (tmp_path / "run" / "meter.sock").mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "brproxy", "up", "--bedrock-simulator", "--port", str(free_port()),
         "--data-dir", str(tmp_path)],
        env={**_clean_env(), "DATABASE_URL": database_url},
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert result.returncode == 1
    assert "BRProxy stopped: meter keeps dying" in result.stdout
    assert "meter exited with code 1; restarting it in" in result.stderr
    assert "meter.sock is in the way of this service's socket and is not a socket" in result.stderr
    assert (tmp_path / "run" / "meter.sock").is_dir()
    leftovers = [
        p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []


def _clean_env() -> dict[str, str]:
    import os

    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BRPROXY_", "PGSQL_")) and k != "DATABASE_URL"
    }


def test_own_certificate_and_plain_http(tmp_path: Path, database_url: str) -> None:
    cert, key, _ = ensure_self_signed(tmp_path / "mine")
    mine = start_stack(tmp_path / "a", database_url, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert mine.cert == cert
        port = int(mine.base_url.rsplit(":", 1)[1])
        served = served_certificate(port)
        assert served == x509.load_pem_x509_certificate(cert.read_bytes())
        assert not (tmp_path / "a" / "tls").exists()
    finally:
        assert not stop_stack(mine)

    plain = start_stack(tmp_path / "b", database_url, "--plain-http")
    try:
        assert plain.base_url.startswith("http://")
        with plain.client() as client:
            assert client.get("/health").status_code == 200
    finally:
        assert not stop_stack(plain)


def test_every_service_gets_the_raised_open_file_limit(tmp_path: Path, database_url: str) -> None:
    """Started with the 1,024 soft limit many systems give, the stack still serves many streams."""
    import resource

    from brproxy.process_limits import OPEN_FILES_WANTED

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip(f"the hard limit here ({hard}) leaves nothing to raise")
    expected = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_WANTED)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # what `brproxy up` inherits
    try:
        stack = start_stack(tmp_path, database_url)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        services = psutil.Process(stack.process.pid).children(recursive=True)
        names = {" ".join(p.cmdline()) for p in services}
        assert any("-m translator" in name for name in names) and any("envoy" in name for name in names)
        for service in services:
            assert service.rlimit(psutil.RLIMIT_NOFILE)[0] == expected, service.cmdline()
        assert stack.create_key("limits")["api_key"].startswith("br-")  # and it serves
    finally:
        assert not stop_stack(stack)
