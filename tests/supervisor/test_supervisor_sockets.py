"""`brproxy up` has its services listen on Unix sockets in `<data dir>/run`, a directory only
its user may enter, never on loopback ports (brproxy/supervisor.py, core/unix_sockets.py)."""

from __future__ import annotations

import asyncio
import io
import os
import stat
from pathlib import Path

import pytest
from local_ports import free_port

from brproxy.supervisor import StackFailed, StackOptions, Supervisor
from core.settings import SERVICES, Settings

SERVICE_PORTS = [f"BRPROXY_{service.upper()}_PORT" for service in SERVICES]


def supervisor(data_dir: Path, port: int = 8866) -> Supervisor:
    options = StackOptions(data_dir, "127.0.0.1", port, None, None, True, True, 1)
    return Supervisor(options, out=io.StringIO())


@pytest.fixture(autouse=True)
def _no_service_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*SERVICE_PORTS, "BRPROXY_SOCKET_DIR", "BRPROXY_SIMULATOR_PORT"]:
        monkeypatch.delenv(name, raising=False)


def test_the_services_get_a_socket_dir_of_their_owners_and_no_ports(tmp_path: Path) -> None:
    env = supervisor(tmp_path)._service_env("postgresql://db/x")

    run = tmp_path / "run"
    assert env["BRPROXY_SOCKET_DIR"] == str(run)
    info = run.lstat()
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert not [name for name in SERVICE_PORTS if name in env]
    assert env["BRPROXY_SIMULATOR_PORT"].isdigit()  # the stand-in for AWS stays on a port
    # Every service and client finds its socket from that one setting.
    settings = Settings(socket_dir=Path(env["BRPROXY_SOCKET_DIR"]))
    assert {service: settings.service_socket(service) for service in SERVICES} == {
        "authz": run / "authz.sock",
        "translator": run / "translator.sock",
        "meter": run / "meter.sock",
        "admin": run / "admin.sock",
    }


def test_a_socket_dir_others_could_enter_is_closed_again(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir(mode=0o755)
    (tmp_path / "run").chmod(0o777)
    supervisor(tmp_path)._service_env("postgresql://db/x")
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o700


def test_a_socket_dir_that_is_a_link_elsewhere_stops_the_stack(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "run").symlink_to(elsewhere)
    with pytest.raises(StackFailed, match="must be a directory of this user's"):
        supervisor(tmp_path / "data")._service_env("postgresql://db/x")


def test_a_data_dir_too_long_for_the_sockets_is_refused_before_anything_starts(tmp_path: Path) -> None:
    # 107 bytes at most for a socket's path: `<data dir>/run/translator.sock` must fit.
    data_dir = tmp_path / ("d" * (108 - len(f"{tmp_path}//run/translator.sock")))
    assert len(str(data_dir / "run" / "translator.sock")) == 108
    with pytest.raises(StackFailed) as failed:
        asyncio.run(supervisor(data_dir, free_port()).start())
    assert "the data dir's path is too long for the services' Unix sockets" in str(failed.value)
    assert "use a shorter --data-dir" in str(failed.value)
    assert not data_dir.exists()  # refused before anything was created

    fits = tmp_path / ("d" * (len(data_dir.name) - 1))
    supervisor(fits)._check_socket_dir(fits / "run")  # one byte shorter: accepted
