"""The benchmark's rounds: several runs of one scenario, the sides taking turns, pooled into one.

A pooled figure must be what one longer run would have measured: every sample counted once,
CPU per request weighted by the requests each round served, and the rounds' own p99s kept
so the report shows their spread (and the added p99 of each round against the simulator's
run of the same round).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from loadgen import LoadResult, pooled
from run import Measured, pool_rounds, report


def _run(name: str, latencies: list[float], seconds: float, cpu: dict[str, float], rss: int) -> Measured:
    result = LoadResult(requests=len(latencies), seconds=seconds, latencies_ms=latencies)
    return Measured(name, result, cpu, {"translator": rss}, {"translator": 1})


def test_pooled_results_count_every_sample_once_and_keep_three_different_error_samples() -> None:
    first = LoadResult(2, 1, 1.0, [10.0, 20.0], [5.0], ["timeout", "reset"])
    second = LoadResult(3, 2, 2.0, [30.0, 40.0, 50.0], [6.0, 7.0], ["reset", "status 500", "status 502"])
    merged = pooled([first, second])
    assert (merged.requests, merged.errors, merged.seconds) == (5, 3, 3.0)
    assert merged.latencies_ms == [10.0, 20.0, 30.0, 40.0, 50.0]
    assert merged.ttft_ms == [5.0, 6.0, 7.0]
    assert merged.error_samples == ["timeout", "reset", "status 500"]
    assert merged.rps == pytest.approx(5 / 3)
    assert first.latencies_ms == [10.0, 20.0]  # the rounds themselves are left as they were


def test_rounds_pool_latencies_weigh_cpu_by_requests_and_keep_each_rounds_p99() -> None:
    quick = _run("brproxy", [1.0] * 300, 1.0, {"authz": 0.2, "translator": 0.3}, 60 << 20)
    slow = _run("brproxy", [3.0] * 100, 1.0, {"authz": 0.6, "translator": 0.3}, 70 << 20)
    merged = pool_rounds([quick, slow])
    assert merged.result.requests == 400
    assert merged.result.rps == pytest.approx(200.0)
    # 300 requests at 0.2 ms and 100 at 0.6 ms: 0.3 ms each on average, not (0.2 + 0.6) / 2.
    assert merged.cpu_per_1000["authz"] == pytest.approx(0.3)
    assert merged.cpu_per_1000["translator"] == pytest.approx(0.3)
    assert merged.peak_rss == {"translator": 70 << 20}
    assert merged.round_p99_ms == (1.0, 3.0)
    assert merged.latency(99) == 3.0 and merged.latency(50) == 1.0


def test_one_round_is_the_run_itself() -> None:
    only = _run("simulator", [1.0, 2.0], 1.0, {"simulator": 0.1}, 30 << 20)
    assert pool_rounds([only]) is only


def test_the_report_shows_each_rounds_p99_and_its_added_p99_against_the_same_rounds_simulator(
    capsys: pytest.CaptureFixture[str],
) -> None:
    simulator = pool_rounds(
        [_run("simulator", [40.0] * 100, 1, {}, 1), _run("simulator", [44.0] * 100, 1, {}, 1)]
    )
    proxy = pool_rounds([_run("brproxy", [45.0] * 100, 1, {}, 1), _run("brproxy", [50.0] * 100, 1, {}, 1)])
    report(proxy, simulator, stream=False)
    out = capsys.readouterr().out
    assert "pooled over 2 interleaved rounds; p99 per round 45.0 / 50.0 ms, added 5.0 / 6.0" in out
    # The pooled figures are the pooled samples' percentiles: p99 50 - 44.
    assert "latency p50/p95/p99   50.0/  50.0/  50.0 ms  added   6.0/  6.0/  6.0 ms" in out
