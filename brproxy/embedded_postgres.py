"""The embedded Postgres: the `pgserver` wheel's binaries, run as a supervised child.

We use only pgserver's PostgreSQL build (its `pginstall/bin`), not its process manager:
`postgres` runs in the foreground under our supervisor, so it is restarted, stopped and
reported like every other part of the stack.

The cluster lives in `<data dir>/pgdata`, listens on 127.0.0.1 only (no Unix socket), and
requires a password (SCRAM) that is generated on first start and kept in
`<data dir>/pg-password` (mode 0600): other local users cannot reach the data. PostgreSQL
refuses to run as root, so as root it runs as the unprivileged system user `pgserver`
(created if missing, as pgserver itself does).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["EmbeddedPostgres", "postgres_bin_dir"]

_SYSTEM_USER = "pgserver"
_POSTGRES_ENVIRONMENT = frozenset({"PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR"})
_DB_USER = "brproxy"
_DB_NAME = "brproxy"


def postgres_bin_dir() -> Path:
    """pgserver's PostgreSQL binaries, found without importing pgserver's process manager."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded Postgres needs the `pgserver` package (pip install pgserver)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", name], check=True, capture_output=True)
        return pwd.getpwnam(name)


def _open_path_to(path: Path) -> None:
    """Let other users traverse every directory above `path` (o+x, g+x), as postgres must."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        wanted = mode | stat.S_IXGRP | stat.S_IXOTH
        if wanted != mode:
            parent.chmod(wanted)


def _open_tree(path: Path) -> None:
    """Make an installed tree readable (and its programs runnable) by other users."""
    for root, dirs, files in os.walk(path):
        for name in dirs:
            p = Path(root, name)
            p.chmod(p.stat().st_mode | 0o055)
        for name in files:
            p = Path(root, name)
            p.chmod(p.stat().st_mode | (0o055 if os.access(p, os.X_OK) else 0o044))


def _running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


class EmbeddedPostgres:
    """One PostgreSQL cluster in a data directory."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.password_file = self.data_dir / "pg-password"
        self.log_file = self.data_dir / "logs" / "postgres.log"
        self.port = port
        self.bin = postgres_bin_dir()

    @property
    def system_user(self) -> str | None:
        return _SYSTEM_USER if _running_as_root() else None

    def url(self, database: str = _DB_NAME) -> str:
        password = self.password_file.read_text().strip()
        return f"postgresql://{_DB_USER}:{password}@127.0.0.1:{self.port}/{database}"

    def ensure_initialised(self) -> bool:
        """Create the cluster on first use; True if it was created now."""
        if (self.pgdata / "PG_VERSION").exists():
            return False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.password_file.exists():
            # Written before initdb so a crash between the two leaves a usable password.
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(24))
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a half-made cluster from an interrupted initdb
        self.pgdata.mkdir(mode=0o700)
        pwfile = self.data_dir / ".initdb-pw"
        pwfile.unlink(missing_ok=True)
        # 0600 before the password goes in: another local user must never read it, not even
        # while initdb runs (it is the superuser's, and stays the same in `pg-password`).
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.password_file.read_text().strip())
        try:
            self._prepare_for_system_user(pwfile)
            subprocess.run(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    _DB_USER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                check=True,
                capture_output=True,
                user=self.system_user,
            )
        except subprocess.CalledProcessError as error:
            raise RuntimeError(f"initdb failed: {error.stderr.decode(errors='replace')[-2000:]}") from error
        finally:
            pwfile.unlink(missing_ok=True)
        return True

    def _prepare_for_system_user(self, pwfile: Path) -> None:
        if self.system_user is None:
            return
        entry = _ensure_system_user(self.system_user)
        _open_path_to(self.pgdata)
        _open_tree(self.bin.parent)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        # initdb reads it as that user: the file becomes its (still 0600, nobody else's).
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)

    def command(self) -> list[str]:
        """The foreground `postgres` command line."""
        return [
            str(self.bin / "postgres"),
            "-D",
            str(self.pgdata),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
            # Durability stays on: billing data must survive a crash of the machine.
            "-c",
            "fsync=on",
            "-c",
            "synchronous_commit=on",
            # Quiet unless something is wrong: its lines are mixed into brproxy's output.
            "-c",
            "log_min_messages=warning",
            "-c",
            "log_checkpoints=off",
        ]

    @staticmethod
    def environment(environ: dict[str, str]) -> dict[str, str]:
        """What the postgres process may see of our environment: the locale and the search path,
        never a secret (the admin key, the internal token, AWS credentials, database URLs). A
        database superuser can read its server's environment (`pg_read_binary_file`)."""
        return {
            name: value
            for name, value in environ.items()
            if name in _POSTGRES_ENVIRONMENT or name.startswith("LC_")
        }

    def preexec(self) -> Callable[[], None] | None:
        """Switch to the system user in the child (only when running as root)."""
        if self.system_user is None:
            return None
        entry = pwd.getpwnam(self.system_user)

        def demote() -> None:
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)

        return demote

    def wait_ready(self, timeout: float = 30.0, alive: Callable[[], bool] | None = None) -> None:
        """Block until the server accepts connections (pg_isready)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
                check=False,
            )
            if result.returncode == 0:
                return
            if alive is not None and not alive():
                raise RuntimeError("postgres exited during start-up")
            time.sleep(0.1)
        raise TimeoutError(f"postgres did not become ready on port {self.port} within {timeout}s")

    async def ensure_database(self) -> None:
        """Create the `brproxy` database inside the cluster if it is missing."""
        import asyncpg

        connection = await asyncpg.connect(self.url("postgres"))
        try:
            exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", _DB_NAME)
            if not exists:
                await connection.execute(f'CREATE DATABASE "{_DB_NAME}"')
        finally:
            await connection.close()
