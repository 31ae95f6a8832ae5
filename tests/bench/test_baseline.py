"""`--baseline PATH`: another tree's BRProxy measured beside this one's, in the same run.

Two things must hold for its figures to mean anything: the baseline stack really runs the
other tree's code (one interpreter, one venv, whose editable install points at this tree), and
BRProxy/baseline compares what each proxy adds to the simulator alone, as BRProxy/LiteLLM does.
The first is checked with a stand-in tree whose packages are real Python processes started as
`brproxy up` starts the services (`python -m <service>`, inheriting directory and environment).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from loadgen import LoadResult
from run import (
    LOAD_GENERATOR,
    PYTHON_PACKAGES,
    ROOT,
    Measured,
    RunningStack,
    _summary,
    code_problems,
    differences,
    print_summary,
    report_ratios,
    stack_env,
    versus,
)

# The stand-in's `python -m brproxy`: starts each service as the supervisor does and says where
# its own code came from.
SUPERVISOR = """\
import subprocess, sys, time
for service in ("bedrock_simulator", "meter", "authz", "admin_api", "translator"):
    subprocess.Popen([sys.executable, "-m", service])
print("ready", __file__, flush=True)
time.sleep(60)
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A source tree with every package of BRProxy's, each service idling when run."""
    for package in PYTHON_PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "__main__.py").write_text("import time\ntime.sleep(60)\n")
    (tmp_path / "brproxy" / "__main__.py").write_text(SUPERVISOR)
    return tmp_path.resolve()


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        os.killpg(process.pid, signal.SIGKILL)  # the supervisor and every service under it
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _start(tree: Path, env: dict[str, str], started: list[subprocess.Popen[str]]) -> tuple[RunningStack, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "brproxy"], cwd=tree, env=env, stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    started.append(process)
    assert process.stdout is not None
    ready = process.stdout.readline().split()
    assert ready and ready[0] == "ready", ready
    stack = RunningStack(process, "https://127.0.0.1:1", None, "http://127.0.0.1:2", "k", 0.0, tree, env)
    return stack, ready[1]


def test_a_stack_started_from_another_tree_runs_that_trees_code(
    tree: Path, started: list[subprocess.Popen[str]]
) -> None:
    stack, supervisor_file = _start(tree, stack_env(tree, "bootstrap"), started)
    # The venv's editable install maps `brproxy` to this tree; the other tree's comes first.
    assert supervisor_file == str(tree / "brproxy" / "__main__.py")
    assert code_problems(stack) == []


def test_a_package_the_tree_lacks_is_named_since_it_would_come_from_the_main_tree(
    tree: Path, started: list[subprocess.Popen[str]]
) -> None:
    stack, _ = _start(tree, stack_env(tree, "bootstrap"), started)
    shutil.rmtree(tree / "core")
    assert code_problems(stack) == [f"core is imported from {ROOT / 'core' / '__init__.py'}"]


def test_services_started_without_the_tree_first_on_their_path_are_named(
    tree: Path, started: list[subprocess.Popen[str]]
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    stack, _ = _start(tree, env, started)
    problems = code_problems(stack)
    # The supervisor and its five services, each named with its pid.
    assert len(problems) == 6, problems
    assert all("has PYTHONPATH starting ''" in problem for problem in problems)
    assert any(problem.startswith("-m authz (pid ") for problem in problems)


def _side(name: str, latency: float, ttft: float, rps: float, cpu: dict[str, float]) -> Measured:
    result = LoadResult(requests=100, seconds=100 / rps, latencies_ms=[latency] * 100, ttft_ms=[ttft] * 100)
    return Measured(name, result, cpu, {"envoy": 50 << 20}, {"envoy": 1})


SIMULATOR = _side("simulator", 10.0, 2.0, 2000, {"simulator": 0.3})
BRPROXY = _side(
    "brproxy", 12.0, 3.0, 1000, {"envoy": 0.2, "authz": 0.1, "simulator": 0.3, LOAD_GENERATOR: 0.5}
)
BASELINE = _side(
    "baseline", 14.0, 4.0, 800, {"envoy": 0.3, "authz": 0.3, "simulator": 0.3, LOAD_GENERATOR: 0.5}
)


def test_brproxy_over_the_baseline_compares_what_each_adds_to_the_simulator_alone() -> None:
    ratios = versus(SIMULATOR, BRPROXY, BASELINE, stream=True)
    assert ratios == pytest.approx(
        {
            "throughput": 1.25,  # 1000 rps over 800
            "added_p99": 0.5,  # 2 ms over 4 ms added to the simulator's 10
            "ttft_overhead": 0.5,  # 1 ms over 2 ms
            "proxy_cpu_per_request": 0.5,  # 0.3 over 0.6: no simulator's, no load generator's
        }
    )
    minus = differences(SIMULATOR, BRPROXY, BASELINE, stream=True)
    assert minus == pytest.approx(
        {"throughput": 200.0, "added_p99": -2.0, "ttft_overhead": -1.0, "proxy_cpu_per_request": -0.3}
    )
    assert "ttft_overhead" not in versus(SIMULATOR, BRPROXY, BASELINE, stream=False)


def test_a_baseline_without_a_successful_request_is_not_compared() -> None:
    failed = Measured("baseline", LoadResult(errors=50, seconds=1.0), {}, {}, {})
    assert versus(SIMULATOR, BRPROXY, failed, stream=False) == {
        "throughput": None,
        "added_p99": None,
        "proxy_cpu_per_request": None,
    }
    assert differences(SIMULATOR, BRPROXY, failed, stream=False) == {}


def test_the_report_and_the_summary_carry_the_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    ratios = versus(SIMULATOR, BRPROXY, BASELINE, stream=True)
    report_ratios(ratios, "BRProxy/baseline", differences(SIMULATOR, BRPROXY, BASELINE, stream=True))
    assert capsys.readouterr().out == (
        "  BRProxy/baseline: throughput 1.25x (+200 rps) (higher is better), added p99 0.50x (-2.00 ms),"
        " TTFT overhead 0.50x (-1.00 ms), proxy CPU per request 0.50x (-0.30 ms) (lower is better)\n"
    )
    row = {
        "scenario": "stream",
        "concurrency": 1,
        "sim_latency_ms": 0,
        "simulator": _summary(SIMULATOR, None),
        "brproxy": _summary(BRPROXY, SIMULATOR),
        "baseline": _summary(BASELINE, SIMULATOR),
        "brproxy_vs_baseline": ratios,
    }
    print_summary([row])
    header, line = capsys.readouterr().out.splitlines()[2:4]
    assert "baseline rps" in header and "baseline +p99" in header and "baseline +TTFT" in header
    assert "litellm" not in header and "LiteLLM" not in header
    assert line.split()[3:] == [
        "2000",
        "1000",
        "800",
        "2.0",
        "4.0",
        "1.0",
        "2.0",
        "1.25x",
        "0.50x",
        "0.50x",
        "0.50x",
    ]
    # Each ratio right under its heading.
    for heading, value in zip(
        ("rps", "+p99", "+TTFT", "CPU"), ("1.25x", "0.50x", "0.50x", "0.50x"), strict=True
    ):
        end = header.index(heading, header.index("BRProxy/baseline:")) + len(heading)
        assert line[end - len(value) : end] == value
