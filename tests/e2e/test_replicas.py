"""Two full replicas (Envoy, authz, translator, meter, admin API each) on one Postgres."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest
from load_client import chat_body, run_load
from stack_process import Stack, start_stack, stop_stack

from core.catalogue import CATALOGUE
from core.pricing import MILLION

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[tuple[Stack, Stack]]:
    first = start_stack(tmp_path_factory.mktemp("replica-a"), database_url)
    try:
        second = start_stack(tmp_path_factory.mktemp("replica-b"), database_url)
    except BaseException:
        stop_stack(first)
        raise
    try:
        yield first, second
    finally:
        assert not stop_stack(second)
        assert not stop_stack(first)


async def _both(pair: tuple[Stack, Stack], key: str, per_replica: int, **body: object) -> list[int]:
    loads = await asyncio.gather(
        *(
            run_load(stack.base_url, stack.verify, key, [chat_body(i, **body) for i in range(per_replica)], 8)  # type: ignore[arg-type]
            for stack in pair
        )
    )
    return [o.status for load in loads for o in load.outcomes]


def _inside_one_minute() -> None:
    """Start at the beginning of a rate-limit window, so the test does not straddle two."""
    second = time.time() % 60
    if second > 45:
        time.sleep(60.5 - second)


def test_rate_limit_holds_across_replicas(pair: tuple[Stack, Stack]) -> None:
    a, _ = pair
    key = a.create_key("limited", month_quota=100)
    response = a.admin("POST", "/admin/api-key/update", json={"id": key["id"], "rate_limit_rpm": 20})
    assert response.status_code == 200
    time.sleep(0.5)  # the change reaches both replicas' authz
    _inside_one_minute()
    statuses = asyncio.run(_both(pair, key["api_key"], 20))
    assert statuses.count(200) == 20
    assert statuses.count(429) == 20


def test_budget_holds_across_replicas(pair: tuple[Stack, Stack]) -> None:
    a, _ = pair
    resolved = CATALOGUE.resolve("claude-3-haiku")
    assert resolved is not None
    max_tokens = 1000
    estimate = max_tokens * resolved.prices.output / MILLION
    balance = (estimate * 10 + Decimal("0.0005")).quantize(Decimal("0.000001"))
    key = a.create_key("budget", month_quota=0, balance=str(balance))
    statuses = asyncio.run(_both(pair, key["api_key"], 15, tokens=max_tokens, max_tokens=max_tokens))
    assert statuses.count(200) + statuses.count(429) == 30
    assert 6 <= statuses.count(200) <= 10
    deadline = time.monotonic() + 10
    while True:
        row = a.sql(
            "SELECT balance, total_fee, (SELECT count(*) FROM threads WHERE key_id = $1) AS n"
            " FROM api_keys WHERE id = $1",
            key["id"],
        )[0]
        if row["n"] == statuses.count(200) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert row["n"] == statuses.count(200)
    assert row["total_fee"] <= balance
    assert row["balance"] >= 0


def test_revoked_key_is_refused_on_both_replicas_within_a_second(pair: tuple[Stack, Stack]) -> None:
    a, b = pair
    key = a.create_key("to-revoke", month_quota=100)
    clients = [stack.client(key["api_key"]) for stack in pair]
    try:
        body = chat_body(0)
        for client in clients:
            assert client.post("/v1/chat/completions", json=body).status_code == 200
        revoked_at = time.monotonic()
        response = b.admin("POST", "/admin/api-key/update", json={"id": key["id"], "disabled": True})
        assert response.status_code == 200
        refused: dict[int, float] = {}
        while len(refused) < 2:
            for index, client in enumerate(clients):
                if index not in refused and client.post("/v1/chat/completions", json=body).status_code == 401:
                    refused[index] = time.monotonic() - revoked_at
            assert time.monotonic() - revoked_at < 1.0, f"still admitted after 1 s: {refused}"
    finally:
        for client in clients:
            client.close()
    assert max(refused.values()) < 1.0
