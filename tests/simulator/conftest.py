"""The simulator run for real (`python -m bedrock_simulator`), for every test module that asks for it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from local_ports import free_port
from simulator_process import ACCESS_KEY, DEFAULT_TOKENS, REPO_ROOT, SECRET


@pytest.fixture(scope="module")
def simulator() -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "BRPROXY_SIM_SECRET_ACCESS_KEY": SECRET}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bedrock_simulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--access-key-id",
            ACCESS_KEY,
            "--output-tokens",
            str(DEFAULT_TOKENS),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as response:
                    assert response.read() == b"ok"
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("simulator did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            _, stderr = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
    assert b"Bedrock SIMULATOR listening on" in stderr
    assert b"no AWS calls are made" in stderr
