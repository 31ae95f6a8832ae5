"""The benchmark starts a run only once every process measured has gone idle.

Every side shares the same cores: a proxy still busy with the previous run's cut-off requests
would make the next side's figures worse than they are.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from procstats import ProcessGroups, base_role

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


# Starts a child whose command line names `-m translator`, then uses argv[3] seconds of CPU
# (CPU time, not wall time: a loaded machine must not make it use less), then idles.
PARENT_OF_TRANSLATOR = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', '-m', 'translator'])\n"
    "while time.process_time() < float(sys.argv[3]): pass\n"
    "time.sleep(30)"
)


def test_a_prefixed_roots_processes_are_counted_apart_from_the_same_roles_elsewhere(
    busy_for: list[subprocess.Popen[bytes]],
) -> None:
    """Two stacks run the same services: the baseline's authz must not be summed into ours."""
    ours = subprocess.Popen([sys.executable, "-c", BUSY_THEN_IDLE, "-m", "authz", "0"])
    busy_for.append(ours)
    baseline = subprocess.Popen([sys.executable, "-c", PARENT_OF_TRANSLATOR, "-m", "authz", "1.0"])
    busy_for.append(baseline)
    groups = ProcessGroups([ours.pid, baseline.pid], {baseline.pid: "baseline:"})
    try:
        groups.wait_until_idle(max_wait_s=20)  # the baseline's authz spins for 1 s of CPU, then idles
        sample = groups.sample()
        assert sample.process_count == {"authz": 1, "baseline:authz": 1, "baseline:translator": 1}
        # The CPU the baseline's authz spent is the baseline's alone.
        assert sample.cpu_seconds["baseline:authz"] >= 0.9
        assert sample.cpu_seconds["authz"] < 0.5  # its interpreter's start-up only
        assert set(sample.peak_rss_bytes) == {"authz", "baseline:authz", "baseline:translator"}
    finally:
        for child in psutil.Process(baseline.pid).children():
            child.kill()
    assert base_role("baseline:translator") == "translator" and base_role("authz") == "authz"
