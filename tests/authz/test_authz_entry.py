"""`python -m authz` turns gRPC's EventEngine endpoints off before gRPC loads, unless told otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Imports the entry module as `python -m authz` does (which imports grpc), then starts a gRPC
# server, which is when gRPC reads the experiments and complains of any it does not know.
PROBE = """
import concurrent.futures, os, sys
import authz.__main__
import grpc
assert "grpc" in sys.modules
grpc.server(concurrent.futures.ThreadPoolExecutor(1)).stop(None)
print(os.environ["GRPC_EXPERIMENTS"])
"""


def _run_entry(**extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"} | extra
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def test_the_entry_turns_the_event_engine_endpoints_off() -> None:
    done = _run_entry()
    assert set(done.stdout.strip().split(",")) == {
        "-event_engine_listener",
        "-event_engine_for_all_other_endpoints",
    }
    # Every name is one this gRPC knows: else it logs an error line at each start of authz.
    assert "experiment" not in done.stderr.lower(), done.stderr


def test_an_operators_own_setting_wins() -> None:
    done = _run_entry(GRPC_EXPERIMENTS="event_engine_listener")
    assert done.stdout.strip() == "event_engine_listener"
