"""Limits the whole stack inherits from `brproxy up`."""

from __future__ import annotations

import resource

__all__ = ["OPEN_FILES_WANTED", "raise_open_file_limit"]

OPEN_FILES_WANTED = 65536
"""Enough for tens of thousands of concurrent streams: each holds a connection from Envoy to
the translator and one from the translator to Bedrock, and Envoy two more."""


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft limit on open files toward the hard limit; children inherit it.

    Many systems start processes with a soft limit of 1,024, which a gateway holding a few
    hundred streams would reach (EMFILE: new connections refused). The hard limit is the
    administrator's ceiling and is left as it is. Returns (before, after).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_WANTED)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        return soft, wanted
    return soft, soft
