"""LiteLLM's proxy, the peer users would otherwise pick, run beside BRProxy against the same simulator.

It lives in its own virtual environment (`bench/.litellm-venv`, created on first use from
`bench/litellm-requirements.txt` and reused while that file is unchanged), so nothing of it
enters the project's dependencies. `start_litellm` writes a `config.yaml` for the benchmark's
model pointed at the simulator, starts `litellm --num_workers N` on loopback and waits until
every worker is serving; `RunningLiteLLM.stop` ends it and its workers.

Options chosen to make LiteLLM's side fast and fair (listed by `RunningLiteLLM.features`):
its own logging at ERROR (`LITELLM_LOG`), uvicorn's access log off, uvloop (LiteLLM's default),
no retries (BRProxy does not retry either), and the bundled cost map and other bundled data
instead of fetching them from the internet at start-up. Authentication is on: a master key.

LiteLLM has no database here: its database layer is Prisma, whose query engine is downloaded
from Prisma's own servers at first use, and only PyPI, npm and Debian are reachable from this
machine. Without it LiteLLM accepts only the master key (no virtual keys, budgets or spend
logs), so LiteLLM does less per request than BRProxy, which checks a per-key quota and meters
every call into Postgres. The report says so.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from brproxy.child_process import die_with_parent

__all__ = ["BedrockTarget", "RunningLiteLLM", "ensure_litellm", "start_litellm"]

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".litellm-venv"
REQUIREMENTS = BENCH / "litellm-requirements.txt"
# Records which requirements the venv was built from, so a changed pin reinstalls.
_INSTALLED_STAMP = VENV / ".bench-requirements"
_READY_LINE = "Application startup complete."

# LiteLLM fetches these from GitHub at start-up unless told to use its bundled copies; the
# benchmark keeps every byte on loopback (and a failed fetch would only add start-up retries).
_OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "HF_HUB_OFFLINE": "1",
}

# uvicorn's default logging with the access log silenced: one log line per request is CPU that
# BRProxy does not spend either. The start-up lines stay, to tell when every worker is ready.
_UVICORN_LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s: %(message)s"}},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
    },
}


def ensure_litellm() -> tuple[Path, str]:
    """The `litellm` command in the benchmark's own venv (installed if needed) and its version."""
    wanted = REQUIREMENTS.read_text()
    python = VENV / "bin" / "python"
    command = VENV / "bin" / "litellm"
    stamp = _INSTALLED_STAMP.read_text() if _INSTALLED_STAMP.exists() else None
    if not (command.exists() and stamp == wanted):
        print(f"Installing LiteLLM's proxy into {VENV} (first use: about a minute)...", flush=True)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        install = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                str(REQUIREMENTS),
            ],
            capture_output=True,
            text=True,
        )
        if install.returncode != 0:
            raise SystemExit(f"installing LiteLLM failed:\n{(install.stdout + install.stderr)[-3000:]}")
        _INSTALLED_STAMP.write_text(wanted)
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return command, version


@dataclass
class RunningLiteLLM:
    process: subprocess.Popen[bytes]
    url: str
    master_key: str
    version: str
    workers: int
    log_path: Path
    startup_seconds: float

    @property
    def features(self) -> str:
        return (
            f"LiteLLM {self.version}, plain HTTP (no TLS), auth by master key only, NO database "
            "(LiteLLM's Prisma engines cannot be downloaded here: no virtual keys, budgets or spend logs), "
            f"{self.workers} uvicorn workers + uvloop, LITELLM_LOG=ERROR, access log off, retries off, "
            "bundled cost map"
        )

    def stop(self) -> None:
        # uvicorn's supervisor stops its workers on SIGTERM; the process group (its own) is
        # killed only if that does not happen in time.
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


@dataclass(frozen=True)
class BedrockTarget:
    """The model LiteLLM serves and the Bedrock endpoint (here, the simulator) it calls as whom."""

    endpoint_url: str
    model_name: str
    """The name clients ask for."""
    bedrock_id: str
    access_key: str
    secret_key: str
    region: str


def write_config(work_dir: Path, target: BedrockTarget, master_key: str) -> Path:
    """LiteLLM's `config.yaml` (written as JSON, which YAML reads) for one Bedrock model."""
    config = {
        "model_list": [
            {
                "model_name": target.model_name,
                "litellm_params": {
                    "model": f"bedrock/{target.bedrock_id}",
                    "aws_bedrock_runtime_endpoint": target.endpoint_url,
                    "aws_access_key_id": target.access_key,
                    "aws_secret_access_key": target.secret_key,
                    "aws_region_name": target.region,
                },
            }
        ],
        "general_settings": {"master_key": master_key},
        "litellm_settings": {"set_verbose": False, "num_retries": 0, "request_timeout": 120},
        "router_settings": {"num_retries": 0},
    }
    path = work_dir / "config.yaml"
    path.write_text(
        "# Generated by bench/litellm_peer.py for one benchmark run.\n" + json.dumps(config, indent=2)
    )
    return path


def start_litellm(
    command: Path,
    version: str,
    work_dir: Path,
    port: int,
    target: BedrockTarget,
    *,
    workers: int,
    timeout_seconds: float = 240.0,
) -> RunningLiteLLM:
    work_dir.mkdir(parents=True, exist_ok=True)
    master_key = "sk-bench-" + secrets.token_urlsafe(16)
    config = write_config(work_dir, target, master_key)
    log_config = work_dir / "uvicorn-log.json"
    log_config.write_text(json.dumps(_UVICORN_LOG_CONFIG))
    # A clean environment: no inherited AWS_*, DATABASE_URL or LITELLM_* setting may change
    # what LiteLLM talks to; LITELLM_MODE=PRODUCTION stops it reading a .env file.
    env = {
        name: os.environ[name] for name in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR") if name in os.environ
    }
    env.update(_OFFLINE_ENV)
    env.update({"LITELLM_LOG": "ERROR", "LITELLM_MODE": "PRODUCTION"})
    log_path = work_dir / "litellm.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(command), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                "--num_workers", str(workers), "--log_config", str(log_config),
            ],
            env=env, cwd=work_dir, stdout=log, stderr=subprocess.STDOUT,
            # Its own process group (so a Ctrl-C reaches only the benchmark, which then stops it
            # in order), and SIGTERM from the kernel if the benchmark dies without cleaning up.
            preexec_fn=die_with_parent(),
        )  # fmt: skip
    peer = RunningLiteLLM(process, f"http://127.0.0.1:{port}", master_key, version, workers, log_path, 0.0)
    try:
        _wait_ready(peer, timeout_seconds)
    except BaseException:
        peer.stop()
        raise
    peer.startup_seconds = time.monotonic() - started
    return peer


def _wait_ready(peer: RunningLiteLLM, timeout_seconds: float) -> None:
    """Until every worker has finished its start-up and the proxy answers its liveness probe.

    Waiting for all workers matters: the first one up answers the probe while the others are
    still importing, and a load started then would measure one worker plus start-up CPU.
    """
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if peer.process.poll() is not None:
            raise SystemExit(f"LiteLLM exited with status {peer.process.returncode}:\n{peer.log_tail()}")
        if peer.log_tail(1_000_000).count(_READY_LINE) >= peer.workers:
            try:
                with urllib.request.urlopen(peer.url + "/health/liveliness", timeout=5):
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
        time.sleep(0.5)
    raise SystemExit(f"LiteLLM was not ready after {timeout_seconds:.0f} s:\n{peer.log_tail()}")
