"""`brproxy up` raises the open-file limit every service inherits (`brproxy/process_limits.py`)."""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Iterator

import pytest

from brproxy.process_limits import OPEN_FILES_WANTED, raise_open_file_limit


@pytest.fixture
def low_soft_limit() -> Iterator[int]:
    """The soft limit lowered to 1,024, as many systems start processes; restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip(f"the hard limit here ({hard}) leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_soft_limit_is_raised_toward_the_hard_one_and_children_inherit_it(low_soft_limit: int) -> None:
    hard = low_soft_limit
    expected = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_WANTED)
    assert raise_open_file_limit() == (1024, expected)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (expected, hard)
    child = subprocess.run(
        [sys.executable, "-c", "import resource; print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(child.stdout) == expected


def test_a_limit_already_high_enough_is_left_alone(low_soft_limit: int) -> None:
    raise_open_file_limit()
    raised = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert raise_open_file_limit() == (raised[0], raised[0])
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == raised
