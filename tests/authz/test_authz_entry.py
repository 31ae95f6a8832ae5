"""`python -m authz` turns gRPC's EventEngine endpoints off before gRPC loads, unless told otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What gRPC itself reads once loaded; grpc is imported by the entry module's imports.
PROBE = "import authz.__main__, os, sys; print(os.environ['GRPC_EXPERIMENTS']); print('grpc' in sys.modules)"


def _entry_environment(**extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"} | extra
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    experiments, grpc_loaded = done.stdout.split()
    assert grpc_loaded == "True"
    return experiments


def test_the_entry_turns_the_event_engine_endpoints_off() -> None:
    turned_off = set(_entry_environment().split(","))
    assert turned_off == {
        "-event_engine_listener",
        "-event_engine_for_all_other_endpoints",
        "-event_engine_endpoint",
    }


def test_an_operators_own_setting_wins() -> None:
    assert _entry_environment(GRPC_EXPERIMENTS="event_engine_listener") == "event_engine_listener"
