"""The services' Unix sockets (core/unix_sockets.py) and where Settings puts them."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.settings import Settings, settings_problems
from core.unix_sockets import (
    MAX_SOCKET_PATH_BYTES,
    bind_listener,
    prepare_to_listen,
    remove_listener,
    socket_identity,
)

TOKEN = "internal-token-for-tests-0123456789abcdef"


@pytest.fixture
def run(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    return path


def test_a_bound_socket_is_its_owners_only_and_serves(run: Path) -> None:
    path = run / "meter.sock"
    with bind_listener(path) as listener:
        assert stat.S_ISSOCK(path.lstat().st_mode)
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600
        listener.listen()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))


def test_a_socket_a_killed_predecessor_left_is_replaced(run: Path) -> None:
    path = run / "translator.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # as after SIGKILL: the file stays, nobody listens
    with socket.socket(socket.AF_UNIX) as client, pytest.raises(ConnectionRefusedError):
        client.connect(str(path))
    with bind_listener(path) as listener:
        listener.listen()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))


@pytest.mark.parametrize("kind", ["file", "directory", "symlink"])
def test_anything_else_in_the_way_is_left_alone_and_refused(run: Path, kind: str) -> None:
    path = run / "authz.sock"
    target = run / "precious"
    target.write_text("keep me")
    if kind == "file":
        path.write_text("keep me")
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(target)
    with pytest.raises(SystemExit, match="is in the way of this service's socket and is not a socket"):
        prepare_to_listen(path)
    assert path.exists() or path.is_symlink()
    assert target.read_text() == "keep me"


def test_a_directory_others_may_enter_is_refused(run: Path) -> None:
    run.chmod(0o711)
    with pytest.raises(SystemExit, match=r"is open to other users \(mode 0711; it must be 0700\)"):
        prepare_to_listen(run / "admin.sock")
    assert not (run / "admin.sock").exists()


def test_a_directory_that_is_a_link_is_refused(run: Path, tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(run)
    with pytest.raises(SystemExit, match="is not a directory"):
        prepare_to_listen(tmp_path / "link" / "admin.sock")


def test_another_users_directory_is_refused(run: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to give the directory away")
    os.chown(run, 65534, 65534)
    with pytest.raises(SystemExit, match="belongs to another user"):
        prepare_to_listen(run / "admin.sock")


def test_a_missing_directory_is_made_its_owners_only(tmp_path: Path) -> None:
    path = tmp_path / "run" / "meter.sock"
    with bind_listener(path):
        assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o700


def test_a_path_too_long_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    directory = tmp_path / ("d" * 120)
    with pytest.raises(SystemExit, match=f"over the {MAX_SOCKET_PATH_BYTES} a Unix socket's path may have"):
        prepare_to_listen(directory / "x.sock")
    assert not directory.exists()


def test_only_the_socket_we_bound_is_removed(run: Path) -> None:
    path = run / "meter.sock"
    with bind_listener(path):
        ours = socket_identity(path)
    with bind_listener(path):  # the name taken again since (a successor)
        remove_listener(path, ours)
        assert stat.S_ISSOCK(path.lstat().st_mode)
        remove_listener(path, socket_identity(path))
        assert not path.exists()
    remove_listener(path, ours)  # already gone: nothing to do


# --- Settings ---------------------------------------------------------------------------------


def test_without_a_socket_dir_the_services_are_on_tcp() -> None:
    settings = Settings(
        internal_token=TOKEN, authz_host="authz", authz_port=8867, meter_host="::1", meter_port=8869
    )
    assert settings.service_socket("meter") is None
    assert settings.service_address("authz") == ("authz", 8867)
    assert settings.service_address("translator") == ("127.0.0.1", settings.translator_port)
    assert settings.authz_grpc_target == "authz:8867"
    assert settings.meter_url == "http://[::1]:8869"
    assert settings.translator_url == f"http://127.0.0.1:{settings.translator_port}"


def test_with_a_socket_dir_every_service_is_reached_at_its_socket(tmp_path: Path) -> None:
    settings = Settings(internal_token=TOKEN, socket_dir=tmp_path / "run", authz_port=8867)
    run = (tmp_path / "run").absolute()
    assert settings.service_address("admin") == run / "admin.sock"
    assert settings.authz_grpc_target == f"unix:{run / 'authz.sock'}"
    # The URL names the service (Host header); the connection goes to the socket.
    assert (settings.meter_url, settings.translator_url) == ("http://meter", "http://translator")


@pytest.mark.parametrize(
    ("host", "target"),
    [
        pytest.param("127.0.0.1", "127.0.0.1:50051", id="ipv4"),
        pytest.param("authz.internal", "authz.internal:50051", id="name"),
        pytest.param("::1", "[::1]:50051", id="ipv6"),
        pytest.param("[::1]", "[::1]:50051", id="bracketed-ipv6"),
    ],
)
def test_authz_grpc_target_over_tcp(host: str, target: str) -> None:
    assert Settings(authz_host=host, authz_port=50051).authz_grpc_target == target


def test_a_socket_dir_too_long_is_an_invalid_setting_named_without_its_value(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    too_long = tmp_path / ("secret-looking-" + "d" * 100)
    monkeypatch.setenv("BRPROXY_SOCKET_DIR", str(too_long))
    with pytest.raises(ValidationError) as invalid:
        Settings()
    (line,) = settings_problems(invalid.value)
    assert line.startswith("BRPROXY_SOCKET_DIR: ")
    assert "translator.sock" in line and "use a shorter directory" in line
    assert "secret-looking" not in line
