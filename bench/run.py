"""BRProxy's benchmark: the full stack and LiteLLM's proxy against the same Bedrock simulator, on loopback.

Run it with `./scripts/bench` (see `--help`). It starts `brproxy up --bedrock-simulator`
(TLS, authz, translator, meter writing to an embedded Postgres) in a temporary data
directory and creates a key; then LiteLLM's proxy (installed on first use into
`bench/.litellm-venv`, see `bench/litellm_peer.py`) configured for the same model and pointed
at the same simulator. It checks that both hand back the simulator's answer exactly, streamed
and not, and then for each scenario (non-stream, stream) and concurrency runs a bounded
closed-loop load against the simulator alone, through BRProxy and through LiteLLM.
It prints, per side: requests per second, latency added over the simulator's own
(p50/p95/p99), time to first token for streams, CPU seconds per 1,000 requests of each of the
side's processes, and peak memory; then BRProxy/LiteLLM ratios. With the simulator answering
at once (the default), concurrency 16 is then run again with `--moderate-latency-ms` (40) of
simulator latency per request, since a closed loop on an instant simulator saturates the
machine; those runs are repeated in `--moderate-rounds` (3) interleaved rounds whose samples
are pooled (`pool_rounds`). A summary table and the performance targets, each marked met or
not beside its figure, end the run. Figures are measurements, not assertions.

`--no-litellm` skips the peer; `--litellm-only` skips BRProxy (a standalone simulator is started
instead); `--memory-check N` sends N requests through BRProxy and compares each service's
resident memory at N/10 and N (and shows it at N/2).

`--baseline PATH` measures a change's before and after in one run: PATH is another source tree
of BRProxy (e.g. `git worktree add /tmp/brproxy-base <commit>`), started as a second
`brproxy up --bedrock-simulator` by the same interpreter from that tree (its own simulator and
Postgres; its processes counted apart, under roles prefixed `baseline:`) and measured as one
more side, "baseline", in the same rounds; each scenario then ends with BRProxy/baseline ratios
and differences. `--prompt-kb N` pads every side's request with N KiB of code and prose (an
earlier user turn, so the simulator's answer stays the same) to measure big requests, such as
Claude Code's 200 KB ones.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import uvloop  # the load generator's own loop: the less CPU it takes, the less it skews the figures
import yarl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from answer_check import check_answers
from litellm_peer import BedrockTarget, ensure_litellm, start_litellm
from loadgen import LoadResult, Request, percentile, pooled, run_load
from procstats import ProcessGroups, Sample, base_role, role_of
from simulator_client import (
    BEDROCK_ID,
    REGION,
    SIM_ACCESS_KEY,
    SIM_SECRET_KEY,
    converse_body,
    signed_converse,
    simulator_answer,
    start_standalone_simulator,
)

ROOT = Path(__file__).resolve().parent.parent
MODEL = "claude-3-haiku"
# The processes that serve each side's requests: only these are counted for that side, so
# idle neighbours (BRProxy's services while LiteLLM is measured) add no noise.
SIMULATOR_ROLES = ("simulator",)
BRPROXY_ROLES = ("envoy", "authz", "translator", "meter", "admin_api", "postgres", "simulator")
LITELLM_ROLES = ("litellm", "simulator")
BASELINE_PREFIX = "baseline:"
"""Before the roles of the baseline stack's processes (see `ProcessGroups`)."""
BASELINE_ROLES = tuple(BASELINE_PREFIX + role for role in BRPROXY_ROLES)
PYTHON_PACKAGES = (
    "brproxy", "core", "edge", "authz", "translator", "meter", "admin_api", "bedrock_simulator",
)  # fmt: skip
"""The tree's packages: a stack runs the code of the tree they are imported from."""
PYTHON_ROLES = ("authz", "translator", "meter", "admin_api", "simulator")
LOAD_GENERATOR = "(load generator)"
MODERATE_CONCURRENCY = (16,)
"""The concurrency of the added-latency target, measured again under a moderate load."""
MAX_PROMPT_KIB = 16384
"""--prompt-kb's ceiling (16 MiB): each side's request is built once and held in memory."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningStack:
    process: subprocess.Popen[str]
    url: str
    cert: str | None
    simulator_url: str
    bootstrap_key: str
    startup_seconds: float
    tree: Path
    env: dict[str, str]


def stack_env(tree: Path, bootstrap: str) -> dict[str, str]:
    """The environment `brproxy up` from `tree` starts with (and every service inherits).

    The stack runs the code of `tree` although every tree shares one interpreter (the venv's,
    whose editable install points at the main tree): `python -m` run from `tree` puts it first
    on the path, and PYTHONPATH says it again for any process started elsewhere. Both stacks
    are started so, the main one too, so neither differs from the other but in its code.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BRPROXY_", "PGSQL_")) and k not in ("DATABASE_URL", "PYTHONSAFEPATH")
    }
    env["ADMIN_API_KEY"] = bootstrap
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))
    return env


def start_brproxy(data_dir: Path, args: argparse.Namespace, tree: Path = ROOT) -> RunningStack:
    port = free_port()
    bootstrap = "bench-" + secrets.token_urlsafe(16)
    env = stack_env(tree, bootstrap)
    command = [
        sys.executable, "-m", "brproxy", "up", "--bedrock-simulator", "--port", str(port),
        "--data-dir", str(data_dir), "--workers", str(args.workers),
        "--simulator-latency-ms", str(args.sim_latency_ms),
        "--simulator-tokens-per-second", str(args.sim_tokens_per_second),
    ]  # fmt: skip
    started = time.monotonic()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tree
    )
    assert process.stdout is not None
    cert = None
    for line in process.stdout:
        if line.startswith("BRProxy is ready"):
            startup = time.monotonic() - started
        if line.startswith("TLS certificate: "):
            cert = line.split(": ", 1)[1].strip()
            break
        if line.startswith("BRProxy stopped"):
            raise SystemExit(f"brproxy up ({tree}) failed: {line}")
    else:
        # Its own output went to /dev/null (logs under load would cost the figures): say how to see it.
        raise SystemExit(
            f"brproxy up ({tree}) exited before it was ready; to see why: "
            f"cd {tree} && {sys.executable} -m brproxy up --bedrock-simulator"
        )
    sim_port = _simulator_port(process.pid)
    return RunningStack(
        process, f"https://127.0.0.1:{port}", cert, f"http://127.0.0.1:{sim_port}", bootstrap, startup,
        tree, env,
    )  # fmt: skip


_IMPORT_PROBE = (
    "import importlib.util, json, sys\n"
    "print(json.dumps({name: importlib.util.find_spec(name).origin for name in sys.argv[1:]}))"
)


def code_problems(stack: RunningStack) -> list[str]:
    """Why the stack might not run the code of its tree; empty when it does.

    Each Python process of the stack must work in the tree with the tree first on its path
    (read from /proc), and the tree's packages, imported by the same interpreter in that same
    directory and environment, must come from the tree and not from the venv's editable
    install (the main tree).
    """
    import psutil

    tree = str(stack.tree)
    problems: list[str] = []
    root = psutil.Process(stack.process.pid)
    python = [root] + [
        child
        for child in root.children(recursive=True)
        if role_of(child.cmdline()) in (*PYTHON_ROLES, "worker")  # uvicorn's workers too
    ]
    if len(python) < 1 + len(PYTHON_ROLES):
        problems.append(f"only {len(python)} Python processes found under brproxy up")
    for process in python:
        try:
            name, cwd = " ".join(process.cmdline()[1:3]), process.cwd()
            first = process.environ().get("PYTHONPATH", "").split(os.pathsep)[0]
        except psutil.Error as error:  # gone (a service that died) or unreadable
            problems.append(f"pid {process.pid}: {type(error).__name__}")
            continue
        if cwd != tree:
            problems.append(f"{name} (pid {process.pid}) works in {cwd}")
        if first != tree:
            problems.append(f"{name} (pid {process.pid}) has PYTHONPATH starting {first!r}")
    probe = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, *PYTHON_PACKAGES],
        cwd=tree, env=stack.env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if probe.returncode:
        problems.append(f"importing the packages failed: {probe.stderr.strip()[-300:]}")
    else:
        for package, origin in json.loads(probe.stdout).items():
            if not (origin or "").startswith(tree + os.sep):
                problems.append(f"{package} is imported from {origin}")
    return problems


def tree_version(tree: Path) -> str:
    """The tree's commit, and whether it has changes on top (for the header: what ran)."""
    head = subprocess.run(
        ["git", "-C", str(tree), "log", "-1", "--format=%h %s"], capture_output=True, text=True, check=False
    )
    if head.returncode:
        return "(not a git checkout)"
    status = subprocess.run(
        ["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    changes = " + uncommitted changes" if status.stdout.strip() else ""
    return f"{head.stdout.strip()[:72]}{changes}"


def _simulator_port(root: int) -> int:
    import psutil

    for child in psutil.Process(root).children(recursive=True):
        line = " ".join(child.cmdline())
        if "-m bedrock_simulator" in line:
            match = re.search(r"--port (\d+)", line)
            if match:
                return int(match.group(1))
    raise SystemExit("simulator process not found")


def create_key(stack: RunningStack) -> str:
    import ssl

    context = ssl.create_default_context(cafile=stack.cert)
    context.check_hostname = False
    request = urllib.request.Request(
        stack.url + "/admin/api-key/apply",
        data=json.dumps({"name": "bench", "month_quota": "1000000", "balance": "1000000"}).encode(),
        headers={"authorization": f"Bearer {stack.bootstrap_key}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, context=context) as response:
        return str(json.load(response)["data"]["api_key"])


def stop_brproxy(stack: RunningStack) -> None:
    stack.process.send_signal(signal.SIGINT)
    stack.process.wait(timeout=60)


def prompt(tokens: int, latency_ms: int | None = None) -> str:
    """The same prompt for every side; the simulator echoes its first 40 characters.

    `latency_ms` asks the simulator for that latency on this request (its `latency_ms`
    directive), overriding the latency it was started with.
    """
    latency = f" latency_ms={latency_ms}" if latency_ms is not None else ""
    return f"Benchmark prompt, please answer. [[sim:tokens={tokens}{latency}]]"


# A source file with its explanation, as a coding assistant's conversation carries them: quotes,
# backslashes and newlines to escape in JSON, as in real requests. ASCII, so a character is a byte.
_PADDING_LINES = (
    "from __future__ import annotations",
    "",
    "import json",
    "from dataclasses import dataclass, field",
    "",
    "",
    "@dataclass",
    "class Invoice:",
    '    """One customer\'s bill for a month: its lines, their total, and the currency."""',
    "",
    "    customer: str",
    '    currency: str = "EUR"',
    "    lines: list[tuple[str, int]] = field(default_factory=list)",
    "",
    "    def total_cents(self) -> int:",
    "        return sum(cents for _, cents in self.lines)",
    "",
    "    def render(self) -> str:",
    '        rows = [f"{name:<30} {cents / 100:>10.2f}" for name, cents in self.lines]',
    '        return "\\n".join([f"Invoice for {self.customer!r}", *rows, "-" * 41])',
    "",
    "    def to_json(self) -> str:",
    '        return json.dumps({"customer": self.customer, "lines": self.lines}, indent=2)',
    "",
    "The class above keeps amounts in integer cents, so a total never drifts by a rounding error;",
    "render() pads each name to 30 characters and prints the amount with two decimals. A test",
    "should cover an empty invoice, a line with a negative amount (a credit), and a name with a",
    'quote in it, such as "O\'Brien & Sons", which to_json() must escape correctly.',
    "",
)


def padding_text(kib: int) -> str:
    """`kib` KiB of text (exactly kib * 1024 characters, one byte each), numbered lines of code and
    prose as a coding assistant's file reads carry them; empty for 0."""
    size = kib * 1024
    lines: list[str] = []
    length = 0
    while length < size:
        number = len(lines)
        line = f"{number + 1:>6}\t{_PADDING_LINES[number % len(_PADDING_LINES)]}\n"
        lines.append(line)
        length += len(line)
    return "".join(lines)[:size]


_PADDING_REPLY = "I have read the file and its notes."


def history(padding: str) -> tuple[tuple[str, str], ...]:
    """The turns before the prompt: the padding as an earlier user turn, and a short reply.

    Why not after the prompt's directive, in the same message: the simulator echoes the first
    40 characters of the last user text with its directives taken out, and the prompt's own
    text is shorter than that, so padding there would change the answer. In an earlier turn it
    changes neither the answer nor the directives (read from the last user turn only), and a
    long conversation carries most of its bytes there too.
    """
    return (("user", padding), ("assistant", _PADDING_REPLY)) if padding else ()


def chat_body(stream: bool, tokens: int, latency_ms: int | None = None, padding: str = "") -> dict[str, Any]:
    turns = [*history(padding), ("user", prompt(tokens, latency_ms))]
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": role, "content": text} for role, text in turns],
        "max_tokens": 256,
    }
    if stream:
        body["stream"] = True
    return body


def chat_request(
    url: str, api_key: str, stream: bool, latency_ms: int | None, tokens: int, padding: str = ""
) -> Request:
    """An OpenAI chat completion, the same bytes for BRProxy and LiteLLM."""
    return Request(
        url=yarl.URL(url + "/v1/chat/completions"),
        body=json.dumps(chat_body(stream, tokens, latency_ms, padding)).encode(),
        headers={"authorization": f"Bearer {api_key}", "content-type": "application/json"},
        stream=stream,
        first_token_marker=b'"content":"Simulated',
    )


def simulator_request(
    simulator_url: str, stream: bool, latency_ms: int | None, tokens: int, padding: str = ""
) -> Request:
    body = converse_body(prompt(tokens, latency_ms), history=history(padding))
    url, headers = signed_converse(simulator_url, body, stream)
    return Request(
        # encoded=True: send the path exactly as signed (%3A stays %3A).
        url=yarl.URL(url, encoded=True),
        body=body,
        headers=headers,
        stream=stream,
        first_token_marker=b"Simulated",
    )


@dataclass(frozen=True)
class Side:
    """One way of answering the same chat request: the simulator alone or a proxy in front of it."""

    name: str
    roles: tuple[str, ...]
    make_request: Callable[[bool, int | None], Request]
    """Given `stream` and a latency to ask of the simulator (None: its own), the request to send
    (built once per run, sent many times)."""
    ca_file: str | None = None


@dataclass
class Measured:
    name: str
    result: LoadResult
    cpu_per_1000: dict[str, float]
    peak_rss: dict[str, int]
    processes: dict[str, int] = field(default_factory=dict)
    settle: tuple[float, float] = (0.0, 0.0)
    """Seconds waited before the run for every process to go idle, and their CPU share then."""
    round_p99_ms: tuple[float, ...] = ()
    """p99 latency of each round, when the figures pool several (see `pool_rounds`)."""

    def server_cpu_per_1000(self, *, without_simulator: bool = False) -> float:
        return sum(
            value
            for role, value in self.cpu_per_1000.items()
            if role != LOAD_GENERATOR and not (without_simulator and role == "simulator")
        )

    def latency(self, p: float) -> float:
        return percentile(self.result.latencies_ms, p)

    def ttft(self, p: float = 50) -> float:
        return percentile(self.result.ttft_ms, p) if self.result.ttft_ms else math.nan

    def added_p99_ms(self, simulator: Measured) -> float:
        """p99 latency over the simulator's own (the targets' "added p99")."""
        return self.latency(99) - simulator.latency(99)

    def ttft_overhead_ms(self, simulator: Measured) -> float | None:
        """p50 time to first token over the simulator's own; None without streams on both."""
        if not (self.result.ttft_ms and simulator.result.ttft_ms):
            return None
        return self.ttft() - simulator.ttft()


def pool_rounds(runs: list[Measured]) -> Measured:
    """One side's rounds of one scenario as one measurement.

    Latencies are pooled (see `loadgen.pooled`); CPU per request is weighted by each round's
    requests; peak memory and process counts are the highest seen; each round's p99 is kept
    so the report can show how far the rounds spread.
    """
    if len(runs) == 1:
        return runs[0]
    requests = sum(run.result.requests for run in runs)
    cpu: dict[str, float] = {}
    for run in runs:
        for role, value in run.cpu_per_1000.items():
            cpu[role] = cpu.get(role, 0.0) + value * run.result.requests / requests
    peak: dict[str, int] = {}
    processes: dict[str, int] = {}
    for run in runs:
        for role, rss in run.peak_rss.items():
            peak[role] = max(peak.get(role, 0), rss)
        for role, count in run.processes.items():
            processes[role] = max(processes.get(role, 0), count)
    return Measured(
        runs[0].name,
        pooled([run.result for run in runs]),
        cpu,
        peak,
        processes,
        max((run.settle for run in runs), key=lambda settle: settle[0]),
        tuple(run.latency(99) for run in runs),
    )


def _cpu_delta(before: Sample, after: Sample, requests: int, roles: tuple[str, ...]) -> dict[str, float]:
    if not requests:
        return {}
    return {
        role: (after.cpu_seconds[role] - before.cpu_seconds.get(role, 0.0)) * 1000 / requests
        for role in roles
        if role in after.cpu_seconds
    }


@dataclass(frozen=True)
class Phase:
    """Scenarios run with one simulator latency."""

    latency_ms: int
    directive: bool
    """Ask for `latency_ms` in each request (the simulator was started with another)."""
    concurrencies: tuple[int, ...]
    scenarios: tuple[str, ...]
    rounds: int = 1
    """Runs per scenario and side, the sides taking turns; the figures pool them."""


def measure(
    side: Side, groups: ProcessGroups, stream: bool, concurrency: int, phase: Phase, args: argparse.Namespace
) -> Measured:
    request = side.make_request(stream, phase.latency_ms if phase.directive else None)
    settle = groups.wait_until_idle()
    before = groups.sample()
    own_before = time.process_time()
    result = uvloop.run(
        run_load(
            lambda _i: request, concurrency, max_requests=args.requests, max_seconds=args.seconds,
            ca_file=side.ca_file, spread_s=phase.latency_ms / 1000,
        )
    )  # fmt: skip
    own = time.process_time() - own_before
    after = groups.sample()
    # The side's figures by plain role: its prefix (`baseline:`) only kept its processes apart.
    delta = _cpu_delta(before, after, result.requests, side.roles)
    cpu = {base_role(role): value for role, value in delta.items()}
    if result.requests:  # per successful request: a side that only failed has no cost to show
        cpu[LOAD_GENERATOR] = own * 1000 / result.requests
    own_roles = [role for role in side.roles if role in after.peak_rss_bytes]
    return Measured(
        side.name,
        result,
        cpu,
        {base_role(role): after.peak_rss_bytes[role] for role in own_roles},
        {base_role(role): after.process_count[role] for role in own_roles},
        settle,
    )


def report(side: Measured, base: Measured | None, stream: bool) -> None:
    r = side.result
    line = f"  {side.name:<10} {r.rps:8.0f} rps  ok={r.requests:<6} errors={r.errors:<4}"
    p50, p95, p99 = (side.latency(p) for p in (50, 95, 99))
    line += f" latency p50/p95/p99 {p50:6.1f}/{p95:6.1f}/{p99:6.1f} ms"
    if base is not None:
        added = [side.latency(p) - base.latency(p) for p in (50, 95, 99)]
        line += f"  added {added[0]:5.1f}/{added[1]:5.1f}/{added[2]:5.1f} ms"
    if stream and r.ttft_ms:
        line += f"  TTFT p50 {side.ttft():5.1f} ms"
        overhead = side.ttft_overhead_ms(base) if base is not None else None
        if overhead is not None:
            line += f" (+{overhead:4.1f})"
    print(line)
    if len(side.round_p99_ms) > 1:
        rounds = " / ".join(f"{p99:.1f}" for p99 in side.round_p99_ms)
        count = len(side.round_p99_ms)
        line = f"             pooled over {count} interleaved rounds; p99 per round {rounds} ms"
        if base is not None and len(base.round_p99_ms) == len(side.round_p99_ms):
            added_rounds = zip(side.round_p99_ms, base.round_p99_ms, strict=True)
            line += ", added " + " / ".join(f"{own - sim:.1f}" for own, sim in added_rounds)
        print(line)
    waited, share = side.settle
    if waited >= 1.0:
        still = f", still {share:.0%} of a core busy" if share >= 0.05 else ""
        print(f"             started after {waited:.1f} s waiting for every process to go idle{still}")
    if r.errors:
        print(f"             ERRORS {r.errors}, samples: {' | '.join(r.error_samples)}")
    cpu = ", ".join(
        f"{role} {value:.2f}" for role, value in sorted(side.cpu_per_1000.items()) if value > 0.005
    )
    print(f"             CPU s per 1000 requests: {cpu or 'n/a (no successful request)'}")
    total = side.server_cpu_per_1000()
    if base is None:
        print(f"             CPU s per 1000 requests, all server processes: {total:.2f}")
    else:
        proxy = side.server_cpu_per_1000(without_simulator=True)
        total_line = f"{total:.2f} (the proxy's own: {proxy:.2f})"
        print(f"             CPU s per 1000 requests, all server processes: {total_line}")
    peak = ", ".join(
        f"{role} {rss / 2**20:.0f} MiB"
        + (f" ({side.processes[role]} processes)" if side.processes[role] > 1 else "")
        for role, rss in sorted(side.peak_rss.items())
    )
    line = f"             peak RSS: {peak}"
    if base is not None:
        proxy_rss = sum(rss for role, rss in side.peak_rss.items() if role != "simulator")
        line += f"; the proxy's total {proxy_rss / 2**20:.0f} MiB"
    print(line)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator/denominator, or None when it would mean nothing (a non-positive or unknown base)."""
    if numerator is None or denominator is None:
        return None
    if math.isnan(numerator) or math.isnan(denominator) or denominator <= 0 or numerator < 0:
        return None
    return numerator / denominator


def _proxy_cpu(side: Measured) -> float:
    """CPU seconds per 1000 requests (ms per request) of the proxy's processes, no simulator's."""
    return side.server_cpu_per_1000(without_simulator=True)


def _comparable(ours: Measured, theirs: Measured, stream: bool) -> list[str] | None:
    """The keys of a comparison, or None when one side has no successful request to compare."""
    if not (ours.result.requests and theirs.result.requests):
        return None
    return ["throughput", "added_p99", "proxy_cpu_per_request"] + (["ttft_overhead"] if stream else [])


def versus(sim: Measured, ours: Measured, theirs: Measured, stream: bool) -> dict[str, float | None]:
    """`ours` figures over `theirs` (BRProxy over LiteLLM, or over the baseline tree's BRProxy):
    above 1 is better for throughput, below 1 for the rest. Latency and CPU are what each proxy
    adds to the simulator alone (`sim`), CPU without any simulator's."""
    if _comparable(ours, theirs, stream) is None:
        # No successful request on one side: nothing to compare, whatever the arithmetic says.
        keys = ["throughput", "added_p99", "proxy_cpu_per_request"] + (["ttft_overhead"] if stream else [])
        return dict.fromkeys(keys, None)
    ratios = {
        "throughput": _ratio(ours.result.rps, theirs.result.rps),
        "added_p99": _ratio(ours.added_p99_ms(sim), theirs.added_p99_ms(sim)),
        "proxy_cpu_per_request": _ratio(_proxy_cpu(ours), _proxy_cpu(theirs)),
    }
    if stream:
        ratios["ttft_overhead"] = _ratio(ours.ttft_overhead_ms(sim), theirs.ttft_overhead_ms(sim))
    return ratios


def differences(sim: Measured, ours: Measured, theirs: Measured, stream: bool) -> dict[str, float | None]:
    """`ours` figures minus `theirs`: rps, added p99 (ms), TTFT overhead (ms), proxy CPU per
    request (ms). Beside the ratios because a change's effect on a few milliseconds of added
    latency reads better in milliseconds: 0.4 ms over 0.2 ms is a ratio of 2."""
    keys = _comparable(ours, theirs, stream)
    if keys is None:
        return {}
    found: dict[str, float | None] = {
        "throughput": ours.result.rps - theirs.result.rps,
        "added_p99": ours.added_p99_ms(sim) - theirs.added_p99_ms(sim),
        "proxy_cpu_per_request": _proxy_cpu(ours) - _proxy_cpu(theirs),
    }
    if stream:
        ours_ttft, theirs_ttft = ours.ttft_overhead_ms(sim), theirs.ttft_overhead_ms(sim)
        found["ttft_overhead"] = None if ours_ttft is None or theirs_ttft is None else ours_ttft - theirs_ttft
    return {key: None if value is None or math.isnan(value) else value for key, value in found.items()}


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _by(value: float | None, unit: str) -> str:
    return "" if value is None else f" ({value:+.{0 if unit == 'rps' else 2}f} {unit})"


def report_ratios(
    ratios: dict[str, float | None],
    label: str = "BRProxy/LiteLLM",
    minus: dict[str, float | None] | None = None,
) -> None:
    """One line of ratios; with `minus` (see `differences`), each ratio's difference beside it."""
    by = minus or {}
    line = (
        f"  {label}: throughput {_times(ratios['throughput'])}{_by(by.get('throughput'), 'rps')}"
        f" (higher is better), added p99 {_times(ratios['added_p99'])}{_by(by.get('added_p99'), 'ms')}"
    )
    if "ttft_overhead" in ratios:
        line += f", TTFT overhead {_times(ratios['ttft_overhead'])}{_by(by.get('ttft_overhead'), 'ms')}"
    line += (
        f", proxy CPU per request {_times(ratios['proxy_cpu_per_request'])}"
        f"{_by(by.get('proxy_cpu_per_request'), 'ms')} (lower is better)"
    )
    print(line)


def _summary(m: Measured, simulator: Measured | None) -> dict[str, Any]:
    """One side's figures for the summary, the targets and --json (over the simulator's, for a proxy)."""
    summary: dict[str, Any] = {
        "rps": m.result.rps,
        "requests": m.result.requests,
        "errors": m.result.errors,
        "error_samples": m.result.error_samples,
        "p50_ms": m.latency(50),
        "p95_ms": m.latency(95),
        "p99_ms": m.latency(99),
        "ttft_p50_ms": m.ttft() if m.result.ttft_ms else None,
        "cpu_s_per_1000": m.cpu_per_1000,
        "peak_rss_bytes": m.peak_rss,
        "rounds": max(1, len(m.round_p99_ms)),
        "round_p99_ms": list(m.round_p99_ms),
    }
    if simulator is not None:
        summary["added_p99_ms"] = m.added_p99_ms(simulator)
        summary["ttft_overhead_ms"] = m.ttft_overhead_ms(simulator)
    return summary


COMPARISONS = (
    ("brproxy_vs_baseline", "BRProxy/baseline", "baseline"),
    ("brproxy_vs_litellm", "BRProxy/LiteLLM", "litellm"),
)
"""A row's ratios: its key, its label, and the side BRProxy is compared with."""


def print_summary(rows: list[dict[str, Any]]) -> None:
    names = [name for name in ("simulator", "brproxy", "baseline", "litellm") if name in rows[0]]
    print("\nSummary: rps, added p99 and TTFT p50 overhead (ms) over the simulator alone")
    header = f"  {'scenario':<10} {'conc':>4} {'sim ms':>6}  " + "  ".join(
        f"{name + ' rps':>13}" for name in names
    )
    proxies = [name for name in names if name != "simulator"]
    header += "  " + "  ".join(f"{name + ' +p99':>13}" for name in proxies)
    header += "  " + "  ".join(f"{name + ' +TTFT':>14}" for name in proxies)
    comparisons = [(key, label) for key, label, other in COMPARISONS if other in names and "brproxy" in names]
    for _key, label in comparisons:
        header += f"   {label}:" + "".join(f"{name:>7}" for name in ("rps", "+p99", "+TTFT", "CPU"))
    print(header)
    for row in rows:
        line = f"  {row['scenario']:<10} {row['concurrency']:>4} {row['sim_latency_ms']:>6}  "
        line += "  ".join(f"{row[name]['rps']:13.0f}" for name in names)
        line += "  " + "  ".join(f"{row[name]['added_p99_ms']:13.1f}" for name in proxies)
        ttft = [row[name]["ttft_overhead_ms"] for name in proxies]
        line += "  " + "  ".join(f"{value:14.1f}" if value is not None else f"{'-':>14}" for value in ttft)
        for key, label in comparisons:
            ratios = row.get(key) or {}
            # Each ratio under its heading: the label's width, then four columns of seven.
            line += " " * (len(label) + 4) + "".join(
                f"{_times(ratios.get(name)) if name in ratios else '-':>7}"
                for name in ("throughput", "added_p99", "ttft_overhead", "proxy_cpu_per_request")
            )
        print(line)


def _verdict(met: bool) -> str:
    return "[met]    " if met else "[NOT met]"


def print_targets(rows: list[dict[str, Any]]) -> None:
    """Issue 5's targets for this 2-core machine, each with the figure it is judged on."""
    print("\nTargets (this 2-core machine; measured, never asserted):")

    def where(row: dict[str, Any]) -> str:
        load = "saturated" if row["sim_latency_ms"] == 0 and row["concurrency"] >= 16 else "not saturated"
        return (
            f"{row['scenario']}, concurrency {row['concurrency']}, "
            f"simulator latency {row['sim_latency_ms']} ms ({load})"
        )

    for row in rows:
        if row["scenario"] != "non-stream" or row["concurrency"] != 64 or "brproxy" not in row:
            continue
        rps = row["brproxy"]["rps"]
        print(f"  {_verdict(rps >= 1000)} >= 1000 rps through the full stack, {where(row)}: {rps:.0f} rps")
        ratio = (row.get("brproxy_vs_litellm") or {}).get("throughput")
        if ratio is not None:
            peer = row["litellm"]["rps"]
            figure = f"{ratio:.1f}x ({peer:.0f} rps)"
            print(f"  {_verdict(ratio >= 10)} >= 10x LiteLLM's throughput, {where(row)}: {figure}")
    for row in rows:
        if row["concurrency"] != 16 or "brproxy" not in row:
            continue
        added = row["brproxy"]["added_p99_ms"]
        ratio = (row.get("brproxy_vs_litellm") or {}).get("added_p99")
        met = added <= 10 and (ratio is None or ratio <= 0.1)
        versus = f" ({ratio:.2f}x LiteLLM's)" if ratio is not None else ""
        target = "added p99 <= 10 ms and <= 0.1x LiteLLM's"
        print(f"  {_verdict(met)} {target}, {where(row)}: {added:.1f} ms{versus}")
    for row in rows:
        if row["scenario"] != "stream" or "brproxy" not in row:
            continue
        overhead = row["brproxy"]["ttft_overhead_ms"]
        if overhead is None:
            continue
        print(f"  {_verdict(overhead <= 5)} TTFT overhead p50 <= 5 ms, {where(row)}: {overhead:.1f} ms")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated (default 1,16,64)")
    parser.add_argument("--scenarios", default="non-stream,stream", help="non-stream,stream")
    parser.add_argument("--requests", type=int, default=10000, help="max requests per run (default 10000)")
    parser.add_argument("--seconds", type=float, default=15.0, help="max seconds per run (default 15)")
    parser.add_argument("--tokens", type=int, default=16, help="output tokens per answer (default 16)")
    parser.add_argument(
        "--sim-latency-ms", type=int, default=0, help="simulator latency before answering (default 0)"
    )
    parser.add_argument(
        "--moderate-latency-ms",
        type=int,
        default=40,
        help="with --sim-latency-ms 0, then also run concurrency 16 with this simulator latency"
        " (default 40; 0 = skip)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="runs per scenario and side, the sides taking turns; figures pool them (default 1)",
    )
    parser.add_argument(
        "--moderate-rounds",
        type=int,
        default=3,
        help="the same for the moderate-load runs (default 3: their p99 is what a burst of noise"
        " on the machine moves most)",
    )
    parser.add_argument(
        "--sim-tokens-per-second", type=float, default=0.0, help="simulator token rate (0 = max)"
    )
    parser.add_argument("--workers", type=int, default=1, help="BRProxy's translator/admin worker processes")
    peer = parser.add_mutually_exclusive_group()
    peer.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM peer (quicker)")
    peer.add_argument(
        "--litellm-only",
        action="store_true",
        help="skip BRProxy: only the simulator (standalone) and LiteLLM",
    )
    parser.add_argument(
        "--litellm-workers", type=int, default=2, help="LiteLLM's worker processes (default 2)"
    )
    parser.add_argument(
        "--memory-check",
        type=int,
        default=0,
        metavar="N",
        help="instead: send N non-stream requests through BRProxy; memory per service at N/10, N/2, N",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="PATH",
        help="also measure the BRProxy of another source tree (e.g. `git worktree add /tmp/brproxy-base"
        " <commit>`) as the side 'baseline', in the same rounds: a change's before and after in one run",
    )
    parser.add_argument(
        "--prompt-kb",
        type=int,
        default=0,
        metavar="N",
        help="pad every request with N KiB of code and prose, in an earlier user turn (default 0: the"
        f" short prompt alone; at most {MAX_PROMPT_KIB})",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.memory_check and args.litellm_only:
        parser.error("--memory-check measures BRProxy; it cannot be combined with --litellm-only")
    if args.rounds < 1 or args.moderate_rounds < 1:
        parser.error("--rounds and --moderate-rounds must be at least 1")
    if not 0 <= args.prompt_kb <= MAX_PROMPT_KIB:
        parser.error(f"--prompt-kb must be between 0 and {MAX_PROMPT_KIB}")
    if args.baseline is not None:
        if args.litellm_only:
            parser.error("--baseline is compared with this tree's BRProxy: not with --litellm-only")
        if args.memory_check:
            parser.error("--memory-check measures this tree's BRProxy alone: not with --baseline")
        args.baseline = args.baseline.resolve()
        if os.pathsep in str(args.baseline):  # it goes on PYTHONPATH, where that separates entries
            parser.error(f"--baseline {args.baseline}: a path with {os.pathsep!r} in it cannot be used")
        if not (args.baseline / "brproxy" / "__main__.py").is_file():
            parser.error(f"--baseline {args.baseline}: not a BRProxy source tree (no brproxy/__main__.py)")
    return args


@dataclass(frozen=True)
class AnswerSource:
    """A proxy whose answers are checked, and the simulator whose answer it must hand back."""

    name: str
    url: str
    api_key: str
    ca_file: str | None
    simulator_url: str


def check_all_answers(sources: list[AnswerSource], tokens: int, padding: str) -> None:
    """Each proxy's answers (with the run's padded prompt) against its own simulator's.

    A baseline stack answers from its own simulator, started from its own tree: should that
    simulator answer differently, say so, since the baseline's figures then measure another
    answer too.
    """
    expected = {
        url: simulator_answer(url, prompt(tokens), history(padding))
        for url in dict.fromkeys(source.simulator_url for source in sources)
    }
    print("\nanswers (one non-stream and one stream request each, against the simulator's own):")
    for source in sources:
        check = check_answers(
            source.name, source.url + "/v1/chat/completions", {"authorization": f"Bearer {source.api_key}"},
            chat_body(False, tokens, padding=padding), expected[source.simulator_url], source.ca_file,
        )  # fmt: skip
        print(check.line())
    if len(set(expected.values())) > 1:
        answers = "; ".join(f"{url}: {text!r}" for url, text in expected.items())
        print(f"  note: the simulators answer differently: {answers}")


def _size(length: int) -> str:
    return f"{length} bytes" if length < 10 * 1024 else f"{length / 1024:.1f} KiB"


def request_line(tokens: int, padding: str) -> str:
    """What every side is sent, and how big it is: the same conversation, in two formats."""
    chat = len(json.dumps(chat_body(False, tokens, padding=padding)).encode())
    converse = len(converse_body(prompt(tokens), history=history(padding)))
    what = f"short prompt after {len(padding) // 1024} KiB of code and prose" if padding else "short prompt"
    return (
        f"request: {what}; body {_size(chat)} as an OpenAI chat completion (every proxy), "
        f"{_size(converse)} as a Bedrock Converse request (the simulator alone)"
    )


def main() -> None:
    args = parse_args()
    # A SIGTERM (e.g. from `timeout`) unwinds like an exception, so every process started here
    # is stopped in order on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with_litellm = not args.no_litellm and not args.memory_check
    litellm_command, litellm_version = ensure_litellm() if with_litellm else (None, "")
    # Everything here shares the machine's cores with whatever else runs on it: say how busy it was.
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    padding = padding_text(args.prompt_kb)
    with tempfile.TemporaryDirectory(prefix="brproxy-bench-") as tmp, contextlib.ExitStack() as running:
        sides: list[Side] = []
        roots: list[int] = []
        prefixes: dict[int, str] = {}  # root pid -> prefix of its processes' roles
        checks: list[AnswerSource] = []
        if args.litellm_only:
            simulator = start_standalone_simulator(
                free_port(), args.sim_latency_ms, args.sim_tokens_per_second
            )
            running.callback(simulator.stop)
            simulator_url = simulator.url
            roots.append(simulator.process.pid)
            print(f"Bedrock simulator started alone ({simulator_url}); BRProxy skipped (--litellm-only)")
        else:
            stack = start_brproxy(Path(tmp) / "data", args)
            running.callback(stop_brproxy, stack)
            simulator_url = stack.simulator_url
            roots.append(stack.process.pid)
            print(
                f"BRProxy started in {stack.startup_seconds:.1f}s ({stack.url}); "
                f"simulator {stack.simulator_url}"
            )
            print(
                "features on (BRProxy): TLS, ext_authz (keys in memory, per-key quota and balance), "
                f"translator, meter -> Postgres (embedded); workers={args.workers}"
            )
            key = create_key(stack)
            if args.memory_check:
                memory_check(stack, key, ProcessGroups(roots), args)
                return
            brproxy_request = partial(chat_request, stack.url, key, tokens=args.tokens, padding=padding)
            sides.append(Side("brproxy", BRPROXY_ROLES, brproxy_request, stack.cert))
            checks.append(AnswerSource("brproxy", stack.url, key, stack.cert, stack.simulator_url))
            if args.baseline is not None:
                base = start_brproxy(Path(tmp) / "baseline-data", args, args.baseline)
                running.callback(stop_brproxy, base)
                roots.append(base.process.pid)
                prefixes[base.process.pid] = BASELINE_PREFIX
                print(
                    f"baseline BRProxy started in {base.startup_seconds:.1f}s ({base.url}); "
                    f"its own simulator {base.simulator_url}"
                )
                print(f"code: BRProxy from {stack.tree} at {tree_version(stack.tree)}")
                print(f"      baseline from {base.tree} at {tree_version(base.tree)}")
                problems = code_problems(stack) + code_problems(base)
                if problems:
                    raise SystemExit("a stack may not run its own tree's code:\n  " + "\n  ".join(problems))
                print(
                    "      (checked: each stack's Python processes work in its tree, with it first on their"
                    " path, and its packages import from there)"
                )
                base_key = create_key(base)
                base_request = partial(chat_request, base.url, base_key, tokens=args.tokens, padding=padding)
                sides.append(Side("baseline", BASELINE_ROLES, base_request, base.cert))
                checks.append(AnswerSource("baseline", base.url, base_key, base.cert, base.simulator_url))
        print(
            f"simulator: latency {args.sim_latency_ms} ms, "
            f"{args.sim_tokens_per_second or 'unlimited'} tokens/s, {args.tokens} tokens per answer"
        )
        print(request_line(args.tokens, padding))
        if litellm_command is not None:
            target = BedrockTarget(simulator_url, MODEL, BEDROCK_ID, SIM_ACCESS_KEY, SIM_SECRET_KEY, REGION)
            peer = start_litellm(
                litellm_command, litellm_version, Path(tmp) / "litellm", free_port(), target,
                workers=args.litellm_workers,
            )  # fmt: skip
            running.callback(peer.stop)
            roots.append(peer.process.pid)
            print(f"LiteLLM started in {peer.startup_seconds:.1f}s ({peer.url})")
            print(f"features on (LiteLLM): {peer.features}")
            litellm_request = partial(
                chat_request, peer.url, peer.master_key, tokens=args.tokens, padding=padding
            )
            sides.append(Side("litellm", LITELLM_ROLES, litellm_request))
            checks.append(AnswerSource("litellm", peer.url, peer.master_key, None, simulator_url))
        direct_request = partial(simulator_request, simulator_url, tokens=args.tokens, padding=padding)
        sides.insert(0, Side("simulator", SIMULATOR_ROLES, direct_request))
        check_all_answers(checks, args.tokens, padding)

        figures: list[dict[str, Any]] = []
        for phase in phases(args):
            if phase.directive:
                print(
                    f"\n--- moderate load: each request asks the simulator for {phase.latency_ms} ms of"
                    " latency; clients staggered over one latency period ---"
                )
            figures += run_scenarios(sides, ProcessGroups(roots, prefixes), phase, args)
        for row in figures:
            row["prompt_kib"] = args.prompt_kb
            if args.baseline is not None:
                row["baseline_tree"] = f"{args.baseline} at {tree_version(args.baseline)}"
        if figures:
            print_summary(figures)
            if any(row["sim_latency_ms"] == 0 and row["concurrency"] >= 16 for row in figures):
                # Said with the figures, so nobody reads saturation as the proxy's latency.
                print(
                    "note: with the simulator answering at once, a closed loop of 16 or more clients"
                    " saturates this machine's cores (load generator and simulator included), so"
                    " added latency there is mostly queueing; the rows with a simulator latency"
                    " measure it under a moderate load."
                )
            print_targets(figures)
        print(f"machine load average {os.getloadavg()[0]:.2f} at the end")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))


def phases(args: argparse.Namespace) -> list[Phase]:
    """The scenarios at the simulator's own latency; then, if that is 0, the moderate-load ones."""
    scenarios = tuple(args.scenarios.split(","))
    concurrencies = tuple(int(c) for c in args.concurrency.split(","))
    main = Phase(args.sim_latency_ms, False, concurrencies, scenarios, args.rounds)
    if args.sim_latency_ms or not args.moderate_latency_ms:
        return [main]
    moderate = Phase(args.moderate_latency_ms, True, MODERATE_CONCURRENCY, scenarios, args.moderate_rounds)
    return [main, moderate]


def run_scenarios(
    sides: list[Side], groups: ProcessGroups, phase: Phase, args: argparse.Namespace
) -> list[dict[str, Any]]:
    figures: list[dict[str, Any]] = []
    for scenario in phase.scenarios:
        stream = scenario == "stream"
        for concurrency in phase.concurrencies:
            print(f"\n{scenario}, concurrency {concurrency}, simulator latency {phase.latency_ms} ms:")
            runs: dict[str, list[Measured]] = {side.name: [] for side in sides}
            for round_index in range(phase.rounds):
                for side in sides:
                    run = measure(side, groups, stream, concurrency, phase, args)
                    runs[side.name].append(run)
                    if phase.rounds > 1:
                        which = f"round {round_index + 1}/{phase.rounds} {side.name:<10}"
                        print(
                            f"  {which} {run.result.rps:8.0f} rps  p99 {run.latency(99):6.1f} ms"
                            f"  errors={run.result.errors}"
                        )
            measured = {name: pool_rounds(side_runs) for name, side_runs in runs.items()}
            simulator = measured["simulator"]
            for side in sides:
                report(measured[side.name], None if side.name == "simulator" else simulator, stream)
            row: dict[str, Any] = {
                "scenario": scenario,
                "concurrency": concurrency,
                "sim_latency_ms": phase.latency_ms,
            }
            row.update(
                {name: _summary(m, None if m is simulator else simulator) for name, m in measured.items()}
            )
            if "brproxy" in measured and "baseline" in measured:
                brproxy, baseline = measured["brproxy"], measured["baseline"]
                ratios = versus(simulator, brproxy, baseline, stream)
                minus = differences(simulator, brproxy, baseline, stream)
                report_ratios(ratios, "BRProxy/baseline", minus)
                row["brproxy_vs_baseline"] = ratios
                row["brproxy_minus_baseline"] = minus
            if "brproxy" in measured and "litellm" in measured:
                ratios = versus(simulator, measured["brproxy"], measured["litellm"], stream)
                report_ratios(ratios)
                row["brproxy_vs_litellm"] = ratios
            figures.append(row)
    return figures


def memory_check(stack: RunningStack, key: str, groups: ProcessGroups, args: argparse.Namespace) -> None:
    """N non-stream requests through BRProxy; each service's memory at N/10, N/2 and N.

    The verdict compares N/10 with N: resident memory must differ by less than 10%. N/2 shows
    whether a growth is steady (a leak) or levels off; PSS is printed beside RSS because
    Postgres' summed RSS also grows as its backends touch shared buffers.
    """
    total = args.memory_check
    checkpoints = [total // 10, total // 2, total]
    request = chat_request(stack.url, key, False, None, args.tokens, padding_text(args.prompt_kb))
    sent = 0
    rss_at: dict[int, dict[str, int]] = {}
    pss_at: dict[int, dict[str, int]] = {}
    started = time.monotonic()
    for checkpoint in checkpoints:
        result = uvloop.run(
            run_load(
                lambda _i: request, 32, max_requests=checkpoint - sent, max_seconds=3600, warmup=0,
                ca_file=stack.cert,
            )
        )  # fmt: skip
        sent += result.requests + result.errors
        time.sleep(1)  # let the meter drain
        rss_at[checkpoint] = groups.sample().rss_bytes
        pss_at[checkpoint] = groups.pss_bytes()
        print(f"after {sent} requests ({time.monotonic() - started:.0f}s, {result.errors} errors):")
        if result.error_samples:
            print(f"  error samples: {' | '.join(result.error_samples)}")
        for role, rss in sorted(rss_at[checkpoint].items()):
            pss = pss_at[checkpoint].get(role, 0)
            print(f"  {role:<12} RSS {rss / 2**20:7.1f} MiB   PSS {pss / 2**20:7.1f} MiB")
    first, last = checkpoints[0], checkpoints[-1]
    print(f"\nmemory growth from {first} to {last} requests (must stay under 10% in RSS):")
    for role in sorted(rss_at[last]):
        rss_growth = _growth(rss_at[first].get(role, 0), rss_at[last][role])
        pss_growth = _growth(pss_at[first].get(role, 0), pss_at[last].get(role, 0))
        verdict = "ok (<10%)" if abs(rss_growth) < 10 else "GROWS" if rss_growth > 0 else "SHRINKS"
        if role == "postgres" and verdict == "GROWS":
            # Postgres keeps table pages in shared_buffers (128 MB by default): RSS rises as
            # the usage tables grow until that cache is full. Bounded by configuration.
            verdict = "grows as its page cache fills (bounded by shared_buffers)"
        print(f"  {role:<12} RSS {rss_growth:+6.1f}%  PSS {pss_growth:+6.1f}%  {verdict}")


def _growth(before: int, after: int) -> float:
    return (after - before) / max(1, before) * 100


if __name__ == "__main__":
    main()
