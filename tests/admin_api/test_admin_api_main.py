"""`python -m admin_api` (admin_api/__main__.py): how uvicorn is started, and a real start."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from admin_api_support import FROM_THE_EDGE, TEST_INTERNAL_TOKEN, as_admin
from local_ports import free_port

import admin_api.__main__ as entry
from core import asgi_serving

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def _python_m_admin_api(database_url: str, workers: int, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m admin_api` with `env` added to the BRPROXY_* it always needs; afterwards a
    Ctrl-C (SIGINT), which it must take cleanly (exit status 0)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "admin_api"],
        cwd=REPO,
        env={
            **os.environ,
            "BRPROXY_DATABASE_URL": database_url,
            "BRPROXY_WORKERS": str(workers),
            "BRPROXY_INTERNAL_TOKEN": TEST_INTERNAL_TOKEN,
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
    assert process.returncode == 0, stderr.decode()


def test_main_runs_uvicorn_with_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(asgi_serving.uvicorn, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.setenv("BRPROXY_DATABASE_URL", "postgresql://db.invalid/brproxy")
    monkeypatch.setenv("BRPROXY_BIND_HOST", "0.0.0.0")
    monkeypatch.setenv("BRPROXY_ADMIN_PORT", "19999")
    monkeypatch.setenv("BRPROXY_WORKERS", "4")
    monkeypatch.setenv("BRPROXY_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("BRPROXY_INTERNAL_TOKEN", TEST_INTERNAL_TOKEN)

    entry.main()

    [(args, kwargs)] = calls
    assert args == ("admin_api.app:create_app",)
    log_config = kwargs.pop("log_config")
    assert kwargs == {
        "factory": True,
        "host": "0.0.0.0",
        "port": 19999,
        "workers": 4,
        "loop": "uvloop",
        "http": asgi_serving.CoalescingHttpToolsProtocol,
        "access_log": False,
        "proxy_headers": False,
        "log_level": "warning",
        "server_header": False,
        "lifespan": "on",
        "timeout_keep_alive": asgi_serving.KEEP_ALIVE_S,
        "timeout_graceful_shutdown": 10,
    }
    assert log_config["loggers"]["admin_api"]["level"] == "WARNING"


def test_main_without_a_database_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BRPROXY_DATABASE_URL", "DATABASE_URL", "PGSQL_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(asgi_serving.uvicorn, "run", lambda *args, **kwargs: pytest.fail("uvicorn started"))

    with pytest.raises(SystemExit, match="no database configured"):
        entry.main()


@pytest.mark.parametrize("workers", [1, 2])
def test_python_m_admin_api_serves(database_url: str, workers: int) -> None:
    port = free_port()
    with _python_m_admin_api(
        database_url,
        workers,
        BRPROXY_ADMIN_PORT=str(port),
        BRPROXY_AUTHZ_PORT=str(free_port()),
        BRPROXY_TRANSLATOR_PORT=str(free_port()),
        BRPROXY_METER_PORT=str(free_port()),
    ) as process:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
            deadline = time.monotonic() + 20
            while True:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                try:
                    listed = client.get("/admin/api-key/list", headers=as_admin() | FROM_THE_EDGE)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "admin API did not start"
                    time.sleep(0.05)
            health = client.get("/health")
        assert listed.status_code == 200
        assert listed.json()["success"] is True
        assert health.status_code == 503
        assert "server" not in listed.headers


def test_main_with_a_socket_dir_gives_uvicorn_its_bound_socket(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """On one machine (BRPROXY_SOCKET_DIR) uvicorn serves a socket bound beforehand (0600),
    never a host and port; the socket file goes when it stops."""
    path = tmp_path / "run" / "admin.sock"
    seen: dict[str, Any] = {}

    def run(app: str, **kwargs: Any) -> None:
        with socket.socket(fileno=os.dup(kwargs["fd"])) as given:
            seen.update(kwargs, bound_to=given.getsockname(), mode=stat.S_IMODE(path.lstat().st_mode))

    monkeypatch.setattr(asgi_serving.uvicorn, "run", run)
    monkeypatch.setenv("BRPROXY_DATABASE_URL", "postgresql://db.invalid/brproxy")
    monkeypatch.setenv("BRPROXY_SOCKET_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("BRPROXY_ADMIN_PORT", "19999")
    monkeypatch.setenv("BRPROXY_INTERNAL_TOKEN", TEST_INTERNAL_TOKEN)

    entry.main()

    assert "host" not in seen and "port" not in seen
    assert (seen["bound_to"], seen["mode"]) == (str(path), 0o600)
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o700
    assert not path.exists()


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


@pytest.mark.parametrize("workers", [1, 2])
def test_python_m_admin_api_serves_on_its_socket_only(
    database_url: str, tmp_path: Path, workers: int
) -> None:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    path = run / "admin.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # left by a predecessor that was killed
    stale.close()
    port = free_port()
    with _python_m_admin_api(
        database_url,
        workers,
        BRPROXY_SOCKET_DIR=str(run),
        BRPROXY_ADMIN_PORT=str(port),  # ignored: a socket dir means no port
    ) as process:
        deadline = time.monotonic() + 20
        while not _accepts(path):  # (httpx leaks its socket on a refused Unix connect)
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "admin API did not start"
            time.sleep(0.05)
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport, base_url="http://admin", trust_env=False) as client:
            listed = client.get("/admin/api-key/list", headers=as_admin() | FROM_THE_EDGE)
            refused = client.get("/admin/api-key/list", headers=as_admin())
        assert listed.status_code == 200 and listed.json()["success"] is True
        assert refused.status_code == 401  # the token is still required there
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        for member in tree:
            assert [c for c in member.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN] == []
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/health", trust_env=False)
    assert not path.exists()  # removed on the way out
