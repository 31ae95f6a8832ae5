"""Starting child processes that cannot outlive their parent.

Every child gets PR_SET_PDEATHSIG on Linux: if the supervisor (or a test) dies, even by
SIGKILL, the kernel signals its children, so no service is left behind holding a port.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM, then: Callable[[], None] | None = None) -> Callable[[], None]:
    """A `preexec_fn` that makes the child receive `sig` when its parent exits."""
    parent = os.getpid()

    def preexec() -> None:
        # New process group: a Ctrl-C in the terminal reaches only the supervisor, which
        # then stops the children in order instead of all of them dying at once.
        os.setpgid(0, 0)
        # Credentials first: the kernel clears the parent-death signal when the effective
        # user changes, so it must be set after switching to an unprivileged user.
        if then is not None:
            then()
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os.kill(os.getpid(), sig)

    return preexec
