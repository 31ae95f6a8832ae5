"""Connecting to a Unix socket as another local user (uid 65534, `nobody`), as a test running as root.

Named uniquely (test folders have no `__init__.py`, so every test module shares one namespace).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

NOBODY = 65534
# The system Python: the tests' own interpreter may sit where nobody may not execute it.
_PYTHON = "/usr/bin/python3"
_CONNECT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as error:
    print("errno", error.errno)
else:
    print("connected")
"""


def need_root() -> None:
    if os.geteuid() != 0 or not Path(_PYTHON).exists():
        pytest.skip("needs root (to act as another user) and /usr/bin/python3")


def _become_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def connect_as_nobody(path: Path) -> str:
    """ "connected", or "errno N" for the error nobody's connect() met."""
    done = subprocess.run(
        [_PYTHON, "-c", _CONNECT, str(path)],
        preexec_fn=_become_nobody,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def python_as_nobody(code: str, *args: str) -> subprocess.Popen[str]:
    """`code` run by the system Python as uid 65534, its stdout a text pipe."""
    return subprocess.Popen(
        [_PYTHON, "-c", code, *args],
        preexec_fn=_become_nobody,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
    )


@contextmanager
def directory_anyone_may_enter() -> Iterator[Path]:
    """A fresh directory under /tmp that every user may traverse (pytest's own are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="brproxy-test-", dir="/tmp"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def socket_anyone_may_connect_to(path: Path) -> Iterator[Path]:
    """A listening socket with mode 0777: the control that shows nobody can connect at all."""
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        path.chmod(0o777)
        server.listen()
        yield path
