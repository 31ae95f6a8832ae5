"""The internal services' Unix sockets on one machine: where one may be, and how it is made ready.

`brproxy up` has the services listen in `<data dir>/run` (Settings.socket_dir), a directory
only the stack's user may enter. A loopback TCP port is open to every local user: any of them
can connect to it and, while its service restarts, bind it and receive what Envoy sends next,
internal token included. A socket in that directory can be neither connected to nor replaced
by anyone else, at any moment. The file itself is made 0600 too, though the directory is the
guard (connect() needs write permission on the socket, and search permission on the way).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

__all__ = [
    "MAX_SOCKET_PATH_BYTES",
    "bind_listener",
    "prepare_to_listen",
    "remove_listener",
    "restrict_to_owner",
    "socket_identity",
    "socket_path_problem",
]

MAX_SOCKET_PATH_BYTES = 107
"""sun_path holds 108 bytes, its terminating NUL included."""


def socket_path_problem(path: Path) -> str | None:
    """Why `path` cannot name a Unix socket (it is too long), or None. Names no path."""
    length = len(os.fsencode(path.absolute()))
    if length <= MAX_SOCKET_PATH_BYTES:
        return None
    return f"{length} bytes long, over the {MAX_SOCKET_PATH_BYTES} a Unix socket's path may have"


def _private_directory_problem(directory: Path) -> str | None:
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return "does not exist"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory (a symbolic link or another file)"
    if info.st_uid != os.geteuid():
        return "belongs to another user"
    if stat.S_IMODE(info.st_mode) & 0o077:
        return f"is open to other users (mode {stat.S_IMODE(info.st_mode):04o}; it must be 0700)"
    return None


def prepare_to_listen(path: Path) -> None:
    """Make `path` free for a listener, or stop with a clear error.

    Its directory is created (0700) if missing and must be this user's alone: a socket
    elsewhere would be open to others, so none is made there. A socket left at `path` by a
    predecessor that was killed is removed (it is ours: no one else can write there); any
    other file is left alone and refused.
    """
    problem = socket_path_problem(path)
    if problem is not None:
        raise SystemExit(f"BRProxy: the socket path {path} is {problem}: use a shorter directory")
    directory = path.parent
    with contextlib.suppress(FileExistsError, FileNotFoundError):  # checked just below
        directory.mkdir(mode=0o700)
    problem = _private_directory_problem(directory)
    if problem is not None:
        raise SystemExit(f"BRProxy: the socket directory {directory} {problem}")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise SystemExit(f"BRProxy: {path} is in the way of this service's socket and is not a socket")
    path.unlink()


def restrict_to_owner(path: Path) -> None:
    """A bound socket file: connectable by its owner only."""
    os.chmod(path, 0o600)


def bind_listener(path: Path) -> socket.socket:
    """A Unix stream socket bound to `path` (mode 0600), not yet listening."""
    prepare_to_listen(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(os.fspath(path))
        restrict_to_owner(path)
    except BaseException:
        listener.close()
        raise
    return listener


def socket_identity(path: Path) -> tuple[int, int, int]:
    """What tells the socket file at `path` from one bound there later (inodes are reused)."""
    info = os.lstat(path)
    return info.st_dev, info.st_ino, info.st_ctime_ns


def remove_listener(path: Path, identity: tuple[int, int, int]) -> None:
    """Remove the socket file we bound (`identity`: its socket_identity then), not a successor's."""
    with contextlib.suppress(FileNotFoundError):
        if socket_identity(path) == identity:
            path.unlink()
