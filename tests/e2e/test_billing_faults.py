"""Billing you can trust: exact metering while parts of the stack crash, and bounded overspend."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from load_client import Load, chat_body, run_load
from stack_process import Stack, start_stack, stop_stack

from authz.estimate import admission_for
from core.catalogue import CATALOGUE
from core.pricing import MILLION

pytestmark = pytest.mark.e2e

LOAD = 240
CONCURRENCY = 8


def assert_every_success_billed_once(stack: Stack, key_id: int, load: Load, timeout: float = 60.0) -> None:
    """Every answer a client received is a thread with exactly the usage the client saw."""
    expected = {o.request_id: (o.prompt_tokens, o.completion_tokens) for o in load.ok}
    assert None not in expected, "Envoy must return x-request-id"
    deadline = time.monotonic() + timeout
    while True:
        rows = stack.sql(
            "SELECT event_id::text AS id, tokens_in, tokens_out FROM threads"
            " WHERE event_id = ANY($1::uuid[])",
            list(expected),
        )
        if len(rows) == len(expected) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    billed = {r["id"]: (r["tokens_in"], r["tokens_out"]) for r in rows}
    missing = set(expected) - set(billed)
    assert not missing, f"{len(missing)} answered requests were never billed"
    assert billed == expected
    # The key's totals are exactly the sum of its threads: nothing counted twice.
    totals = stack.sql(
        "SELECT k.total_fee, (SELECT coalesce(sum(fee), 0) FROM threads WHERE key_id = k.id) AS threads_fee,"
        " (SELECT count(*) FROM threads WHERE key_id = k.id) AS threads,"
        " (SELECT count(DISTINCT event_id) FROM threads WHERE key_id = k.id) AS distinct_events"
        " FROM api_keys k WHERE k.id = $1",
        key_id,
    )[0]
    assert totals["total_fee"] == totals["threads_fee"]
    assert totals["threads"] == totals["distinct_events"]
    assert_spend_within_money(stack, key_id)


def assert_spend_within_money(stack: Stack, key_id: int) -> None:
    """The README's bound: a key never spends more than its money (its monthly quota, then its
    balance), whatever failed. Spend beyond the quota comes out of the balance, so that is:
    the balance never goes below zero."""
    row = stack.sql("SELECT balance, month_fee, month_quota FROM api_keys WHERE id = $1", key_id)[0]
    assert row["balance"] >= 0, dict(row)


def _kill_and_wait_restart(stack: Stack, module: str, sig: int = signal.SIGKILL) -> None:
    victims = stack.processes(module)
    assert victims, f"no process {module}"
    old = {p.pid for p in victims}
    for process in victims:
        process.send_signal(sig)
    deadline = time.monotonic() + 30
    while not [p for p in stack.processes(module) if p.pid not in old]:
        assert time.monotonic() < deadline, f"{module} was not restarted"
        time.sleep(0.1)
    # Back in service (the next test's first call must not meet it starting).
    with stack.client() as client:
        while True:
            try:
                if client.get("/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{module} did not come back"
            time.sleep(0.1)


@pytest.mark.parametrize(
    "victim",
    [
        pytest.param("-m meter", id="meter-sigkill"),
        pytest.param("-m translator", id="translator-sigkill"),
        pytest.param("-m authz", id="authz-sigkill"),
    ],
)
def test_killed_service_mid_load_loses_no_billing(stack: Stack, victim: str) -> None:
    key = stack.create_key(f"load-{victim}", month_quota=1000)

    async def kill(_done: int) -> None:
        await asyncio.to_thread(_kill_and_wait_restart, stack, victim)

    bodies = [chat_body(i, stream=(i % 3 == 0)) for i in range(LOAD)]
    load = asyncio.run(run_load(stack.base_url, stack.verify, key["api_key"], bodies, CONCURRENCY, kill))
    statuses = collections.Counter((o.status, (o.error or "")[:60]) for o in load.outcomes)
    if victim == "-m authz":
        # Nothing is admitted while authz restarts: those requests fail cleanly (503), no more.
        assert {o.status for o in load.outcomes} <= {200, 503}, statuses
        assert len(load.ok) >= LOAD // 5, statuses
    else:
        assert len(load.ok) >= LOAD * 0.8, statuses
    if victim == "-m meter":
        # The request path never waits on the meter: nothing failed while it was down.
        assert len(load.ok) == LOAD
    assert_every_success_billed_once(stack, key["id"], load)


def test_postgres_restart_mid_load_loses_no_billing(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / "data", None)  # embedded Postgres, restarted by the supervisor
    try:
        key = stack.create_key("pg-restart", month_quota=1000)

        async def restart_postgres(_done: int) -> None:
            postmaster = [
                p for p in stack.descendants() if p.name() == "postgres" and p.ppid() == stack.process.pid
            ]
            assert postmaster
            await asyncio.to_thread(postmaster[0].send_signal, signal.SIGINT)

        bodies = [chat_body(i, stream=(i % 2 == 0)) for i in range(LOAD)]
        load = asyncio.run(
            run_load(stack.base_url, stack.verify, key["api_key"], bodies, CONCURRENCY, restart_postgres)
        )
        # Requests fail cleanly (a JSON error with a 5xx status) or succeed.
        for outcome in load.outcomes:
            assert outcome.status in (200, 502, 503, 504), outcome
        assert len(load.ok) >= LOAD // 3
        assert any("postgres exited" in line or "postgres killed" in line for line in stack.output)
        deadline = time.monotonic() + 60
        with stack.client() as client:
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "".join(stack.output[-60:])
                time.sleep(0.2)
        assert_every_success_billed_once(stack, key["id"], load)
    finally:
        assert not stop_stack(stack)


def test_fifty_concurrent_streams_cannot_spend_past_the_balance(stack: Stack) -> None:
    """Reservations bound overspend: sum of max(0, actual - estimate) over admitted requests."""
    max_tokens = 2000
    prices = CATALOGUE.resolve("claude-3-haiku")
    assert prices is not None
    body = chat_body(0, tokens=max_tokens, stream=True, max_tokens=max_tokens)
    body["messages"][0]["content"] += " [[sim:tokens_per_second=4000]]"  # keep them in flight together
    # What authz reserves per request (an upper estimate: output at max_tokens) ...
    estimate_out = max_tokens * prices.prices.output / MILLION
    balance = (estimate_out * 10 + Decimal("0.0005")).quantize(Decimal("0.000001"))
    key = stack.create_key("fifty-streams", month_quota=0, balance=str(balance))

    load = asyncio.run(run_load(stack.base_url, stack.verify, key["api_key"], [body] * 50, 50))

    admitted = load.ok
    refused = [o for o in load.outcomes if o.status == 429]
    assert len(admitted) + len(refused) == 50, [o.error for o in load.outcomes][:5]
    assert 5 <= len(admitted) <= 10
    assert_every_success_billed_once(stack, key["id"], load)
    row = stack.sql("SELECT balance, total_fee FROM api_keys WHERE id = $1", key["id"])[0]
    # Every estimate covered its actual cost, so the documented bound is zero: no overspend.
    assert row["total_fee"] <= balance
    assert row["balance"] >= 0


def _stream_until(
    stack: Stack, key: str, body: dict[str, Any], tokens: int, open_: contextlib.ExitStack
) -> tuple[str, str, Iterator[str]]:
    """Start a stream and read it until `tokens` content deltas have arrived; returns the request
    id, the text received and the rest of the stream's lines (open until `open_` closes)."""
    client = open_.enter_context(stack.client(key))
    response = open_.enter_context(client.stream("POST", "/v1/chat/completions", json=body))
    assert response.status_code == 200
    text, received = [], 0
    lines = response.iter_lines()
    for line in lines:
        if line.startswith("data: {") and '"content":"' in line and '"content":""' not in line:
            text.append(orjson.loads(line[6:])["choices"][0]["delta"]["content"])
            received += 1
            if received >= tokens:
                break
    return response.headers["x-request-id"], "".join(text), lines


def _slow_stream(max_tokens: int, tokens: int, per_second: int) -> dict[str, Any]:
    body = chat_body(0, tokens=tokens, stream=True, max_tokens=max_tokens)
    body["messages"][0]["content"] += f" [[sim:tokens_per_second={per_second}]]"
    return body


def _admitted_again_within(stack: Stack, key: str, seconds: float, failure: str) -> None:
    """A call as dear as the slow streams' is admitted (and served) within `seconds`."""
    deadline = time.monotonic() + seconds
    with stack.client(key) as client:
        small = _slow_stream(max_tokens=20_000, tokens=5, per_second=0)
        while (status := client.post("/v1/chat/completions", json=small).status_code) == 429:
            assert time.monotonic() < deadline, failure
            time.sleep(0.2)
        assert status == 200


def _reservation(body: dict[str, Any]) -> Decimal:
    """What authz reserves for a body (core/admission.py: the same reading)."""
    raw = orjson.dumps(body)
    return admission_for("/v1/chat/completions", raw, CATALOGUE).cost


def test_a_translator_killed_mid_stream_bills_what_was_sent_and_frees_the_rest(stack: Stack) -> None:
    """SIGKILL after the client received 300 tokens: the successor bills at least those (an
    estimate: Bedrock's count never came) within seconds, and frees the rest of the money."""
    body = _slow_stream(max_tokens=20_000, tokens=20_000, per_second=400)
    reserved = _reservation(body)
    money = (reserved * Decimal("1.5")).quantize(Decimal("0.000001"))  # one such call at a time
    key = stack.create_key("translator-killed-mid-stream", month_quota=0, balance=str(money))
    with contextlib.ExitStack() as open_:
        request_id, text, rest = _stream_until(stack, key["api_key"], body, 300, open_)
        with stack.client(key["api_key"]) as other:  # the money is held for the running call
            assert other.post("/v1/chat/completions", json=body).status_code == 429
        _kill_and_wait_restart(stack, "-m translator")
        with pytest.raises(httpx.HTTPError):
            for _ in rest:
                pass
    rows = stack.wait_for("SELECT * FROM threads WHERE event_id = $1::uuid", request_id, timeout=15)
    assert rows, "a stream whose translator died must still be billed"
    thread = rows[0]
    assert thread["estimated"] is True and thread["status"] == "error"
    assert thread["completion"].startswith(text)  # everything the client received, at least
    assert thread["tokens_out"] >= 300 and thread["tokens_out"] < 20_000
    # The rest of the reservation is free again: the same call is admitted at once.
    _admitted_again_within(stack, key["api_key"], 10, "the dead translator's reservation was never freed")
    assert_spend_within_money(stack, key["id"])


def test_an_authz_killed_mid_stream_keeps_the_running_calls_reservation(stack: Stack) -> None:
    """The new authz knows the money the running call holds: it refuses a call the money no
    longer covers, and admits it once the first call is billed."""
    body = _slow_stream(max_tokens=20_000, tokens=2_500, per_second=100)
    reserved = _reservation(body)
    money = (reserved * Decimal("1.5")).quantize(Decimal("0.000001"))
    key = stack.create_key("authz-killed-mid-stream", month_quota=0, balance=str(money))
    with contextlib.ExitStack() as open_:
        request_id, _, rest = _stream_until(stack, key["api_key"], body, 100, open_)
        _kill_and_wait_restart(stack, "-m authz")
        with stack.client(key["api_key"]) as other:
            deadline = time.monotonic() + 20
            while (status := other.post("/v1/chat/completions", json=body).status_code) == 503:
                assert time.monotonic() < deadline, "authz did not come back"
                time.sleep(0.1)  # the new authz is starting
            assert status == 429, "the new authz forgot the running call's reservation"
            # Also once the dead process's grant is old: what it reserved is still held.
            time.sleep(12)
            assert other.post("/v1/chat/completions", json=body).status_code == 429
        lines = [line for line in rest if line]
        assert lines[-1] == "data: [DONE]"
    assert stack.wait_for("SELECT 1 FROM threads WHERE event_id = $1::uuid", request_id)
    _admitted_again_within(stack, key["api_key"], 10, "the recorded call's reservation was never freed")
    assert_spend_within_money(stack, key["id"])


def test_refusal_explains_the_estimate(stack: Stack) -> None:
    key = stack.create_key("tiny-balance", month_quota=0, balance="0.00001")
    with stack.client(key["api_key"]) as client:
        response = client.post("/v1/chat/completions", json=chat_body(0, max_tokens=4096))
    assert response.status_code == 429
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "insufficient_quota"
    assert "may cost up to $" in error["message"] and "max_tokens" in error["message"]


def test_usage_events_survive_in_the_spool_while_the_meter_is_stopped(stack: Stack) -> None:
    """With the meter frozen, answers keep coming and billing catches up once it is back."""
    meter = stack.processes("-m meter")[0]
    key = stack.create_key("frozen-meter", month_quota=1000)
    meter.suspend()
    try:
        bodies = [chat_body(i) for i in range(40)]
        load = asyncio.run(run_load(stack.base_url, stack.verify, key["api_key"], bodies, 4))
        assert len(load.ok) == 40
        spool = list((stack.data_dir / "spool" / "translator").glob("*.jsonl"))
        assert spool, "the undelivered events must be on disk"
    finally:
        meter.resume()
    assert_every_success_billed_once(stack, key["id"], load)
    deadline = time.monotonic() + 10
    while list((stack.data_dir / "spool" / "translator").glob("*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list((stack.data_dir / "spool" / "translator").glob("*.jsonl"))


def test_an_abandoned_stream_is_billed_for_what_was_produced(stack: Stack) -> None:
    key = stack.create_key("abandons", month_quota=10)
    body = chat_body(0, tokens=200, stream=True)
    body["messages"][0]["content"] += " [[sim:tokens_per_second=20]]"
    with (
        stack.client(key["api_key"]) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as r,
    ):
        request_id = r.headers["x-request-id"]
        received = 0
        for line in r.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                received += 1
            if received == 3:
                break  # the client goes away mid-answer
    rows = stack.wait_for("SELECT * FROM threads WHERE event_id = $1::uuid", request_id)
    assert rows, "an abandoned stream must still be billed"
    thread = rows[0]
    assert thread["status"] == "client_closed"
    assert thread["estimated"] is True  # Bedrock never reported usage for it
    assert 3 <= thread["tokens_out"] < 200
    assert thread["fee"] > 0


def test_a_stream_bedrock_breaks_is_billed_and_ends_with_an_error(stack: Stack) -> None:
    key = stack.create_key("broken", month_quota=10)
    body = chat_body(0, tokens=50, stream=True)
    body["messages"][0]["content"] += " [[sim:stream_error=modelStreamErrorException after=5]]"
    with (
        stack.client(key["api_key"]) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as r,
    ):
        request_id = r.headers["x-request-id"]
        lines = [line for line in r.iter_lines() if line]
    assert r.status_code == 200
    assert "[DONE]" not in lines[-1]  # not a fake success
    assert '"error"' in lines[-1]
    thread = stack.wait_for("SELECT * FROM threads WHERE event_id = $1::uuid", request_id)[0]
    assert thread["status"] == "error"
    assert thread["estimated"] is True
    assert thread["tokens_out"] >= 1 and thread["fee"] > 0


def test_reservations_are_freed_when_usage_is_recorded(stack: Stack) -> None:
    """A balance covering two worst-case estimates serves many cheap calls, one after another."""
    max_tokens = 2000
    resolved = CATALOGUE.resolve("claude-3-haiku")
    assert resolved is not None
    estimate = max_tokens * resolved.prices.output / MILLION
    key = stack.create_key("frees", month_quota=0, balance=str((estimate * 2).quantize(Decimal("0.000001"))))
    body = chat_body(0, tokens=4, max_tokens=max_tokens)
    with stack.client(key["api_key"]) as client:
        for _ in range(8):
            deadline = time.monotonic() + 5
            while (status := client.post("/v1/chat/completions", json=body).status_code) == 429:
                # The previous call's reservation is freed once the meter has recorded it.
                assert time.monotonic() < deadline, "a reservation was never freed"
                time.sleep(0.05)
            assert status == 200


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        pytest.param("corrupt_after", "corrupt event stream", id="wrong-checksum"),
        pytest.param("disconnect_after", "broke off", id="connection-dropped"),
    ],
)
@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_a_stream_broken_in_transit_is_billed_and_ends_with_an_error(
    stack: Stack, api: str, fault: str, reason: str
) -> None:
    """A frame with a wrong checksum, or a connection Bedrock drops mid-answer, ends the stream
    with the client's own error event."""
    key = stack.create_key(f"{fault}-{api}", month_quota=10)
    if api == "openai":
        path, body = "/v1/chat/completions", chat_body(0, tokens=50, stream=True)
        body["messages"][0]["content"] += f" [[sim:{fault}=5]]"
    else:
        path = "/v1/messages"
        body = {
            "model": "claude-3-haiku",
            "max_tokens": 200,
            "stream": True,
            "messages": [{"role": "user", "content": f"break me [[sim:tokens=50 {fault}=5]]"}],
        }
    with (
        stack.client(key["api_key"]) as client,
        client.stream("POST", path, json=body) as r,
    ):
        request_id = r.headers["x-request-id"]
        lines = [line for line in r.iter_lines() if line]
    assert r.status_code == 200
    assert any("Simulated" in line for line in lines)  # what came before the fault was relayed
    assert "[DONE]" not in lines[-1] and "message_stop" not in "".join(lines[-2:])
    assert '"error"' in lines[-1] and reason in lines[-1]
    thread = stack.wait_for("SELECT * FROM threads WHERE event_id = $1::uuid", request_id)[0]
    assert thread["status"] == "error"
    assert thread["estimated"] is True
    assert thread["tokens_out"] >= 1 and thread["fee"] > 0


def test_a_busy_key_is_never_refused_while_its_grant_is_renewed(stack: Stack) -> None:
    """More requests than one budget grant covers: grants are topped up, nothing is refused."""
    key = stack.create_key("busy", month_quota=100)
    bodies = [chat_body(i, tokens=2) for i in range(1500)]  # > CHUNK_REQUESTS + 1 of them

    load = asyncio.run(run_load(stack.base_url, stack.verify, key["api_key"], bodies, 16))

    assert len(load.ok) == 1500, [o.error or o.status for o in load.outcomes if o not in load.ok][:5]
    assert_every_success_billed_once(stack, key["id"], load)
    # What the replicas hold for the key never exceeds what it can still pay.
    row = stack.sql(
        "SELECT k.month_quota - k.month_fee + k.balance AS headroom,"
        " (SELECT coalesce(sum(amount), 0) FROM budget_grants WHERE key_id = k.id) AS granted"
        " FROM api_keys k WHERE k.id = $1",
        key["id"],
    )[0]
    assert 0 <= row["granted"] <= row["headroom"]  # (an idle key's grant goes back after 1 s)
