"""`brproxy up` makes the deployment's internal token (one per data dir, 0600) and hands it to
its services in the environment (brproxy/supervisor.py)."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from brproxy.supervisor import StackFailed, StackOptions, Supervisor
from core.internal_auth import token_problem

GIVEN = "a-token-given-in-the-environment-0123456789"


def supervisor(data_dir: Path) -> Supervisor:
    data_dir.mkdir(exist_ok=True)
    options = StackOptions(data_dir, "127.0.0.1", 8866, None, None, True, True, 1)
    return Supervisor(options, out=io.StringIO())


@pytest.fixture(autouse=True)
def _no_token_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRPROXY_INTERNAL_TOKEN", raising=False)


def test_a_token_is_made_once_per_data_dir_owner_only(tmp_path: Path) -> None:
    first = supervisor(tmp_path / "one")
    first._ensure_internal_token()
    path = tmp_path / "one" / "internal-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text()
    assert token_problem(token) is None

    again = supervisor(tmp_path / "one")
    again._ensure_internal_token()
    other = supervisor(tmp_path / "two")
    other._ensure_internal_token()
    env = again._service_env("postgresql://db/x")
    assert env["BRPROXY_INTERNAL_TOKEN"] == token  # the same data dir keeps its token
    assert other._service_env("postgresql://db/x")["BRPROXY_INTERNAL_TOKEN"] != token
    assert "BRPROXY_ENVOY_ADMIN_PORT" not in env  # Envoy's admin is a socket in the data dir


def test_a_token_from_the_environment_wins_and_writes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRPROXY_INTERNAL_TOKEN", GIVEN)
    given = supervisor(tmp_path)
    given._ensure_internal_token()
    assert given._service_env("postgresql://db/x")["BRPROXY_INTERNAL_TOKEN"] == GIVEN
    assert not (tmp_path / "internal-token").exists()


def test_a_damaged_token_file_stops_the_stack_without_showing_it(tmp_path: Path) -> None:
    (tmp_path / "internal-token").write_text("short secret\n")
    with pytest.raises(StackFailed, match="at least 32") as failed:
        supervisor(tmp_path)._ensure_internal_token()
    assert "short secret" not in str(failed.value)
