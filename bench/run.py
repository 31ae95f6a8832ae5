"""BRProxy's benchmark: the full stack against the Bedrock simulator, on loopback.

Run it with `./scripts/bench` (see `--help`). It starts `brproxy up --bedrock-simulator`
(TLS, authz, translator, meter writing to an embedded Postgres) in a temporary data
directory, creates a key, and for each scenario (non-stream, stream) and concurrency runs
a bounded closed-loop load, first against the simulator alone and then through BRProxy.
It prints, per scenario: requests per second, latency added over the simulator's own
(p50/p95/p99), time to first token for streams, CPU seconds per 1,000 requests of every
process, and peak memory. Figures are measurements, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yarl
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import LoadResult, Request, percentile, run_load
from procstats import ProcessGroups, Sample

ROOT = Path(__file__).resolve().parent.parent
SIM_ACCESS_KEY = "BRPROXYSIMULATOR"
SIM_SECRET_KEY = "brproxy-simulator-secret"  # noqa: S105 - the simulator's fixed local credential
MODEL = "claude-3-haiku"
BEDROCK_ID = "anthropic.claude-3-haiku-20240307-v1:0"


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


def start_brproxy(data_dir: Path, args: argparse.Namespace) -> RunningStack:
    port = free_port()
    bootstrap = "bench-" + secrets.token_urlsafe(16)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BRPROXY_", "PGSQL_")) and k != "DATABASE_URL"
    }
    env["ADMIN_API_KEY"] = bootstrap
    command = [
        sys.executable, "-m", "brproxy", "up", "--bedrock-simulator", "--port", str(port),
        "--data-dir", str(data_dir), "--workers", str(args.workers),
        "--simulator-latency-ms", str(args.sim_latency_ms),
        "--simulator-tokens-per-second", str(args.sim_tokens_per_second),
    ]  # fmt: skip
    started = time.monotonic()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT
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
            raise SystemExit(f"brproxy up failed: {line}")
    else:
        raise SystemExit("brproxy up exited before it was ready")
    sim_port = _simulator_port(process.pid)
    return RunningStack(
        process, f"https://127.0.0.1:{port}", cert, f"http://127.0.0.1:{sim_port}", bootstrap, startup
    )


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


def chat_body(stream: bool, tokens: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [
            {"role": "user", "content": f"Benchmark prompt, please answer. [[sim:tokens={tokens}]]"}
        ],
        "max_tokens": 256,
    }
    if stream:
        body["stream"] = True
    return body


def brproxy_request(stack: RunningStack, key: str, stream: bool, tokens: int) -> Request:
    return Request(
        url=yarl.URL(stack.url + "/v1/chat/completions"),
        body=json.dumps(chat_body(stream, tokens)).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        stream=stream,
        first_token_marker=b'"content":"Simulated',
    )


def simulator_request(stack: RunningStack, stream: bool, tokens: int) -> Request:
    """A Converse request signed once (a signature stays valid for 15 minutes)."""
    body = json.dumps(
        {
            "messages": [
                {"role": "user", "content": [{"text": f"Benchmark prompt [[sim:tokens={tokens}]]"}]}
            ],
            "inferenceConfig": {"maxTokens": 256},
        }
    ).encode()
    operation = "converse-stream" if stream else "converse"
    url = f"{stack.simulator_url}/model/{BEDROCK_ID.replace(':', '%3A')}/{operation}"
    aws = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(SIM_ACCESS_KEY, SIM_SECRET_KEY), "bedrock", "us-east-1").add_auth(aws)
    return Request(
        # encoded=True: send the path exactly as signed (%3A stays %3A).
        url=yarl.URL(url, encoded=True),
        body=body,
        headers=dict(aws.headers.items()),
        stream=stream,
        first_token_marker=b"Simulated",
    )


@dataclass
class Measured:
    name: str
    result: LoadResult
    cpu_per_1000: dict[str, float]
    peak_rss: dict[str, int]


def _cpu_delta(before: Sample, after: Sample, requests: int) -> dict[str, float]:
    if not requests:
        return {}
    return {
        role: (after.cpu_seconds.get(role, 0.0) - before.cpu_seconds.get(role, 0.0)) * 1000 / requests
        for role in after.cpu_seconds
    }


def measure(
    name: str, groups: ProcessGroups, make: Any, concurrency: int, args: argparse.Namespace, ca: str | None
) -> Measured:
    before = groups.sample()
    own_before = time.process_time()
    result = asyncio.run(
        run_load(make, concurrency, max_requests=args.requests, max_seconds=args.seconds, ca_file=ca)
    )
    own = time.process_time() - own_before
    after = groups.sample()
    cpu = _cpu_delta(before, after, result.requests)
    cpu["(load generator)"] = own * 1000 / max(1, result.requests)
    return Measured(name, result, cpu, after.peak_rss_bytes)


def report(side: Measured, base: Measured | None, stream: bool) -> None:
    r = side.result
    line = f"  {side.name:<10} {r.rps:8.0f} rps  ok={r.requests:<6} errors={r.errors:<4}"
    lat = r.latencies_ms
    p50, p95, p99 = (percentile(lat, p) for p in (50, 95, 99))
    line += f" latency p50/p95/p99 {p50:6.1f}/{p95:6.1f}/{p99:6.1f} ms"
    if base is not None:
        b = base.result.latencies_ms
        added = [percentile(lat, p) - percentile(b, p) for p in (50, 95, 99)]
        line += f"  added {added[0]:5.1f}/{added[1]:5.1f}/{added[2]:5.1f} ms"
    if stream and r.ttft_ms:
        line += f"  TTFT p50 {percentile(r.ttft_ms, 50):5.1f} ms"
        if base is not None and base.result.ttft_ms:
            line += f" (+{percentile(r.ttft_ms, 50) - percentile(base.result.ttft_ms, 50):4.1f})"
    print(line)
    if r.error_samples:
        print(f"             error samples: {', '.join(r.error_samples)}")
    cpu = ", ".join(
        f"{role} {value:.2f}" for role, value in sorted(side.cpu_per_1000.items()) if value > 0.005
    )
    print(f"             CPU s per 1000 requests: {cpu}")
    total = sum(v for k, v in side.cpu_per_1000.items() if k != "(load generator)")
    print(f"             CPU s per 1000 requests, all server processes: {total:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated (default 1,16,64)")
    parser.add_argument("--scenarios", default="non-stream,stream", help="non-stream,stream")
    parser.add_argument("--requests", type=int, default=3000, help="max requests per run (default 3000)")
    parser.add_argument("--seconds", type=float, default=15.0, help="max seconds per run (default 15)")
    parser.add_argument("--tokens", type=int, default=16, help="output tokens per answer (default 16)")
    parser.add_argument("--sim-latency-ms", type=int, default=0, help="simulator latency before answering")
    parser.add_argument(
        "--sim-tokens-per-second", type=float, default=0.0, help="simulator token rate (0 = max)"
    )
    parser.add_argument("--workers", type=int, default=1, help="translator/admin worker processes")
    parser.add_argument(
        "--memory-check",
        type=int,
        default=0,
        metavar="N",
        help="instead: send N non-stream requests, print RSS per service at N/10 and N",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="brproxy-bench-") as tmp:
        stack = start_brproxy(Path(tmp) / "data", args)
        try:
            print(
                f"BRProxy started in {stack.startup_seconds:.1f}s ({stack.url}); "
                f"simulator {stack.simulator_url}"
            )
            print(
                f"features on: TLS, ext_authz (keys in memory), translator, meter -> Postgres (embedded); "
                f"workers={args.workers}; simulator latency {args.sim_latency_ms} ms, "
                f"{args.sim_tokens_per_second or 'unlimited'} tokens/s, {args.tokens} tokens per answer"
            )
            key = create_key(stack)
            groups = ProcessGroups([stack.process.pid])
            if args.memory_check:
                memory_check(stack, key, groups, args)
                return
            figures: list[dict[str, Any]] = []
            for scenario in args.scenarios.split(","):
                stream = scenario == "stream"
                for concurrency in (int(c) for c in args.concurrency.split(",")):
                    print(f"\n{scenario}, concurrency {concurrency}:")
                    sim = measure(
                        "simulator", groups, lambda _i, s=stream: simulator_request(stack, s, args.tokens),
                        concurrency, args, None,
                    )  # fmt: skip
                    report(sim, None, stream)
                    brp = measure(
                        "brproxy", groups, lambda _i, s=stream: brproxy_request(stack, key, s, args.tokens),
                        concurrency, args, stack.cert,
                    )  # fmt: skip
                    report(brp, sim, stream)
                    peak = ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in sorted(brp.peak_rss.items()))
                    print(f"             peak RSS: {peak}")
                    figures.append(_figures(scenario, concurrency, sim, brp))
            if args.json:
                args.json.write_text(json.dumps(figures, indent=2))
        finally:
            stack.process.send_signal(signal.SIGINT)
            stack.process.wait(timeout=60)


def _figures(scenario: str, concurrency: int, sim: Measured, brp: Measured) -> dict[str, Any]:
    def summary(m: Measured) -> dict[str, Any]:
        lat = m.result.latencies_ms
        return {
            "rps": m.result.rps,
            "errors": m.result.errors,
            "p50_ms": percentile(lat, 50),
            "p95_ms": percentile(lat, 95),
            "p99_ms": percentile(lat, 99),
            "ttft_p50_ms": percentile(m.result.ttft_ms, 50) if m.result.ttft_ms else None,
            "cpu_s_per_1000": m.cpu_per_1000,
        }

    return {
        "scenario": scenario,
        "concurrency": concurrency,
        "simulator": summary(sim),
        "brproxy": summary(brp),
    }


def memory_check(stack: RunningStack, key: str, groups: ProcessGroups, args: argparse.Namespace) -> None:
    total = args.memory_check
    checkpoints = [total // 10, total]
    sent = 0
    rss_at: dict[int, dict[str, int]] = {}
    started = time.monotonic()
    for checkpoint in checkpoints:
        result = asyncio.run(
            run_load(
                lambda _i: brproxy_request(stack, key, False, args.tokens), 32,
                max_requests=checkpoint - sent, max_seconds=3600, warmup=0, ca_file=stack.cert,
            )
        )  # fmt: skip
        sent += result.requests + result.errors
        time.sleep(1)  # let the meter drain
        rss_at[checkpoint] = groups.sample().rss_bytes
        print(f"after {sent} requests ({time.monotonic() - started:.0f}s, {result.errors} errors):")
        for role, rss in sorted(rss_at[checkpoint].items()):
            print(f"  {role:<12} RSS {rss / 2**20:7.1f} MiB")
    first, last = rss_at[checkpoints[0]], rss_at[checkpoints[1]]
    print("\nRSS growth from the first to the last checkpoint:")
    for role in sorted(last):
        growth = (last[role] - first.get(role, 0)) / max(1, first.get(role, 1)) * 100
        verdict = "ok (<10%)" if growth < 10 else "GROWS"
        print(f"  {role:<12} {growth:+6.1f}%  {verdict}")


if __name__ == "__main__":
    main()
