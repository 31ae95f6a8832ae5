"""The Bedrock simulator as the benchmark sees it: its fixed credential, signed requests, a standalone start.

BRProxy's stack (`brproxy up --bedrock-simulator`) starts the simulator itself; `--litellm-only`
runs without BRProxy and starts one here with the same credential and pacing, so LiteLLM is
measured against the same simulator either way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from brproxy.child_process import die_with_parent

__all__ = [
    "BEDROCK_ID",
    "REGION",
    "SIM_ACCESS_KEY",
    "SIM_SECRET_KEY",
    "StandaloneSimulator",
    "converse_body",
    "signed_converse",
    "simulator_answer",
    "start_standalone_simulator",
]

ROOT = Path(__file__).resolve().parent.parent
SIM_ACCESS_KEY = "BRPROXYSIMULATOR"
SIM_SECRET_KEY = "brproxy-simulator-secret"  # noqa: S105 - the simulator's fixed local credential
REGION = "us-east-1"
BEDROCK_ID = "anthropic.claude-3-haiku-20240307-v1:0"


def converse_body(prompt: str, max_tokens: int = 256, history: Sequence[tuple[str, str]] = ()) -> bytes:
    """A Converse request: the turns of `history` ((role, text), oldest first), then `prompt`."""
    turns = [*history, ("user", prompt)]
    return json.dumps(
        {
            "messages": [{"role": role, "content": [{"text": text}]} for role, text in turns],
            "inferenceConfig": {"maxTokens": max_tokens},
        }
    ).encode()


def signed_converse(simulator_url: str, body: bytes, stream: bool) -> tuple[str, dict[str, str]]:
    """URL (path already percent-encoded, as signed) and headers of a Converse(Stream) request.

    A signature stays valid for 15 minutes, so one signed request can be sent many times.
    """
    operation = "converse-stream" if stream else "converse"
    url = f"{simulator_url}/model/{BEDROCK_ID.replace(':', '%3A')}/{operation}"
    aws = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(SIM_ACCESS_KEY, SIM_SECRET_KEY), "bedrock", REGION).add_auth(aws)
    return url, dict(aws.headers.items())


def simulator_answer(simulator_url: str, prompt: str, history: Sequence[tuple[str, str]] = ()) -> str:
    """The text the simulator answers to `prompt` after `history`: what every proxy must hand back
    unchanged."""
    body = converse_body(prompt, history=history)
    url, headers = signed_converse(simulator_url, body, stream=False)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.load(response)
    return "".join(block.get("text", "") for block in answer["output"]["message"]["content"])


@dataclass
class StandaloneSimulator:
    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)


def start_standalone_simulator(port: int, latency_ms: int, tokens_per_second: float) -> StandaloneSimulator:
    # The credential goes through the environment, as `brproxy up` passes it (not visible in `ps`).
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BRPROXY_SIM_ACCESS_KEY_ID": SIM_ACCESS_KEY,
        "BRPROXY_SIM_SECRET_ACCESS_KEY": SIM_SECRET_KEY,
        "BRPROXY_SIM_LATENCY_MS": str(latency_ms),
        "BRPROXY_SIM_TOKENS_PER_SECOND": str(tokens_per_second),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bedrock_simulator", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent(),  # never left behind holding its port
    )
    simulator = StandaloneSimulator(process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the Bedrock simulator exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(simulator.url + "/health", timeout=2):
                return simulator
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    simulator.stop()
    raise SystemExit("the Bedrock simulator did not answer /health within 30 s")
