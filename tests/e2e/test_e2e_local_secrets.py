"""Another local user learns nothing from the data dir, not even while the stack is created.

A security test found the embedded Postgres' superuser password readable by any local user
while initdb ran on a fresh data dir (a 0644 file in a 0755 directory), and the bootstrap
admin key in the Postgres server's environment, where that superuser can read it.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest
from other_user import NOBODY, need_root
from stack_process import BOOTSTRAP_KEY, start_stack, stop_stack

pytestmark = pytest.mark.e2e

# Run as `nobody` with the system Python: polls for the initdb password file of a data dir
# about to be created, and reports what it could read or list.
_WATCHER = r"""
import os, sys, time
data = sys.argv[1]
path = os.path.join(data, ".initdb-pw")
seen = set()
deadline = time.time() + 120
while time.time() < deadline:
    try:
        with open(path) as f:
            print("READ", len(f.read()), flush=True)
            sys.exit(0)
    except FileNotFoundError:
        pass
    except PermissionError:
        seen.add("initdb-pw refused")
    try:
        os.listdir(data)
        seen.add("listed")
    except FileNotFoundError:
        pass
    except PermissionError:
        seen.add("list refused")
    if os.path.exists(os.path.join(data, "stop-watching")):
        break
    time.sleep(0.0005)
print(" | ".join(sorted(seen)), flush=True)
"""


def _as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def test_nobody_reads_no_secret_while_the_stack_is_created(tmp_path: Path) -> None:
    need_root()
    tmp_path.chmod(0o755)  # so that only the data dir's own mode stands between nobody and it
    data_dir = tmp_path / "data"
    watcher = subprocess.Popen(
        ["/usr/bin/python3", "-c", _WATCHER, str(data_dir)],
        preexec_fn=_as_nobody, stdout=subprocess.PIPE, text=True, cwd="/",
    )  # fmt: skip
    stack = start_stack(data_dir, None)  # a fresh data dir: the embedded Postgres is created
    try:
        (data_dir / "stop-watching").touch()
        out, _ = watcher.communicate(timeout=30)
        assert "READ" not in out, "another local user read the database superuser's password"
        assert "listed" not in out and "list refused" in out
        assert stat.S_IMODE(data_dir.stat().st_mode) & 0o066 == 0
        assert stat.S_IMODE((data_dir / ".lock").stat().st_mode) == 0o600
        # The Postgres server's environment holds no secret its superuser could read back.
        postmaster = stack.processes(str(data_dir / "pgdata"))[0]
        environment = Path(f"/proc/{postmaster.pid}/environ").read_bytes().split(b"\0")
        names = {entry.split(b"=", 1)[0].decode() for entry in environment if entry}
        assert not names & {"ADMIN_API_KEY", "BRPROXY_INTERNAL_TOKEN", "BRPROXY_DATABASE_URL"}
        assert BOOTSTRAP_KEY.encode() not in b"\0".join(environment)
    finally:
        if watcher.poll() is None:
            watcher.send_signal(signal.SIGKILL)
            watcher.wait()
        assert not stop_stack(stack)
