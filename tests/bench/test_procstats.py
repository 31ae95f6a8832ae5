"""The benchmark starts a run only once every process measured has gone idle.

Every side shares the same cores: a proxy still busy with the previous run's cut-off requests
would make the next side's figures worse than they are.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from procstats import ProcessGroups

# Busy for `seconds` of wall time, then idle for 30 s; the trailing arguments make its command
# line name a role (`-m authz`), as the stack's processes do.
BUSY_THEN_IDLE = (
    "import sys, time\nt = time.time()\nwhile time.time() - t < float(sys.argv[3]): pass\ntime.sleep(30)"
)


@pytest.fixture
def busy_for() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def _start(started: list[subprocess.Popen[bytes]], seconds: float) -> ProcessGroups:
    process = subprocess.Popen([sys.executable, "-c", BUSY_THEN_IDLE, "-m", "authz", str(seconds)])
    started.append(process)
    return ProcessGroups([process.pid])


def test_a_busy_process_is_waited_for_until_it_idles(busy_for: list[subprocess.Popen[bytes]]) -> None:
    groups = _start(busy_for, 1.5)
    waited, share = groups.wait_until_idle(max_wait_s=10)
    assert 1.0 <= waited < 5.0
    assert share < 0.05


def test_an_idle_process_costs_one_window(busy_for: list[subprocess.Popen[bytes]]) -> None:
    groups = _start(busy_for, 0)
    waited, share = groups.wait_until_idle(window_s=0.2, max_wait_s=10)
    assert waited < 1.0  # the interpreter's start-up may fill the first window
    assert share < 0.05


def test_it_gives_up_after_the_longest_wait(busy_for: list[subprocess.Popen[bytes]]) -> None:
    groups = _start(busy_for, 20)
    waited, share = groups.wait_until_idle(window_s=0.2, max_wait_s=1.0)
    assert 1.0 <= waited < 2.0
    assert share > 0.5  # still spinning: the caller reports it
