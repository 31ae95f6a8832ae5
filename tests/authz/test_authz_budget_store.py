"""Two authz replicas' budget stores on one Postgres: shared budgets and rate limits hold."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from authz_support import MONTH, new_key, sql

from authz.budget import Ledger
from authz.budget_store import CHUNK_REQUESTS, LOW_WATER_REQUESTS, BudgetStore
from authz.rate_limit import RateLimiter, window_of


@pytest.fixture(scope="module")
def replicas(database_url: str) -> Iterator[tuple[BudgetStore, BudgetStore]]:
    stores = (
        BudgetStore(database_url, Ledger(), RateLimiter()),
        BudgetStore(database_url, Ledger(), RateLimiter()),
    )
    for store in stores:
        store.start()
    deadline = time.monotonic() + 10
    while not all(s.ready for s in stores):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield stores
    for store in stores:
        store.stop()


def test_budget_holds_across_replicas_under_concurrency(
    database_url: str, replicas: tuple[BudgetStore, BudgetStore]
) -> None:
    cost = Decimal("0.01")
    key = new_key(database_url, balance="0.10")  # covers exactly ten requests
    admitted: list[bool] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        store = replicas[i % 2]
        ok = store.reserve(key, f"req-{key}-{i}", cost, MONTH)
        with lock:
            admitted.append(ok)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(attempt, range(40)))
    assert sum(admitted) == 10
    both = sum(store.ledger.reserved(key) for store in replicas)
    assert both == Decimal("0.10")
    granted = sql(
        database_url, "SELECT coalesce(sum(amount), 0) AS s FROM budget_grants WHERE key_id = $1", key
    )
    assert granted[0]["s"] <= Decimal("0.10")


def test_released_reservations_make_room_again(
    database_url: str, replicas: tuple[BudgetStore, BudgetStore]
) -> None:
    a, b = replicas
    key = new_key(database_url, balance="0.02")
    assert a.reserve(key, "r1", Decimal("0.01"), MONTH)
    assert a.reserve(key, "r2", Decimal("0.01"), MONTH)
    assert not b.reserve(key, "r3", Decimal("0.01"), MONTH)
    # The meter commits r1 at its actual cost and announces it, in one transaction.
    sql(
        database_url,
        "WITH spend AS (UPDATE api_keys SET balance = balance - 0.004, total_fee = total_fee + 0.004"
        " WHERE id = $1 RETURNING id) SELECT pg_notify('brproxy_usage_recorded', $2) FROM spend",
        key,
        f"{key}:r1",
    )
    deadline = time.monotonic() + 5
    while a.ledger.reserved(key) != Decimal("0.01"):
        assert time.monotonic() < deadline, "the announcement did not free r1"
        time.sleep(0.02)
    # 0.016 left, 0.01 still reserved on a: b may now reserve up to what is really left.
    deadline = time.monotonic() + 5
    while not b.reserve(key, "r3", Decimal("0.006"), MONTH):
        assert time.monotonic() < deadline, "the freed money never became available to the other replica"
        time.sleep(0.05)
    assert not b.reserve(key, "r4", Decimal("0.001"), MONTH)


def test_a_busy_key_gets_its_grant_topped_up_ahead(
    database_url: str, replicas: tuple[BudgetStore, BudgetStore]
) -> None:
    a, _ = replicas
    cost = Decimal("0.001")
    key = new_key(database_url, balance="100")
    assert a.reserve(key, "first", cost, MONTH)  # waits for the first grant
    first_grant = a.ledger.granted(key)
    assert first_grant == cost * (1 + CHUNK_REQUESTS)
    # Use the grant down to just below the low-water mark: the last reservation asks for
    # more in the background, and is admitted without waiting for it.
    used = int((first_grant - cost * LOW_WATER_REQUESTS) / cost)
    for i in range(used):
        assert a.reserve(key, f"busy-{i}", cost, MONTH)
    deadline = time.monotonic() + 5
    while a.ledger.granted(key) == first_grant:
        assert time.monotonic() < deadline, "no top-up was asked for"
        time.sleep(0.01)
    assert a.ledger.unreserved(key) >= cost * LOW_WATER_REQUESTS
    # What this replica may use is exactly what Postgres holds for it.
    held = sql(
        database_url,
        "SELECT amount FROM budget_grants WHERE key_id = $1 AND replica_id = $2",
        key,
        a.replica_id,
    )
    assert held[0]["amount"] == a.ledger.granted(key)


def test_a_key_near_its_limit_is_not_topped_up_on_every_request(
    database_url: str, replicas: tuple[BudgetStore, BudgetStore]
) -> None:
    a, _ = replicas
    cost = Decimal("0.001")
    key = new_key(database_url, balance="0.1")  # 100 requests: less than the low-water room
    started = a.top_ups_started
    for i in range(5):
        assert a.reserve(key, f"near-{i}", cost, MONTH)
        time.sleep(0.05)  # time enough for a top-up to be asked, and refused
    # One top-up was asked for and could not be paid; the next requests did not ask again.
    assert a.top_ups_started - started == 1


def test_rate_limit_holds_across_replicas(
    database_url: str, replicas: tuple[BudgetStore, BudgetStore]
) -> None:
    key = new_key(database_url, balance="1")
    now = time.time()
    if now % 60 > 55:  # keep the whole test inside one window
        time.sleep(61 - now % 60)
        now = time.time()
    taken: list[bool] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        ok = replicas[i % 2].take_permit(key, 20, now) is None
        with lock:
            taken.append(ok)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(attempt, range(50)))
    assert sum(taken) == 20
    used = sql(
        database_url,
        "SELECT used FROM rate_windows WHERE key_id = $1 AND window_start = to_timestamp($2)",
        key,
        window_of(now),
    )
    assert used[0]["used"] == 20
    assert replicas[0].take_permit(key, 20, now) is not None  # the refusal says how long to wait


def test_a_stopped_replica_gives_its_grants_back_and_holds_its_calls(database_url: str) -> None:
    key = new_key(database_url, balance="0.05")
    first = BudgetStore(database_url, Ledger(), RateLimiter())
    first.start()
    while not first.ready:
        time.sleep(0.02)
    assert first.reserve(key, "x", Decimal("0.01"), MONTH)
    assert sql(database_url, "SELECT count(*) AS n FROM budget_grants WHERE key_id = $1", key)[0]["n"] == 1
    first.stop()
    assert sql(database_url, "SELECT count(*) AS n FROM budget_grants WHERE key_id = $1", key)[0]["n"] == 0
    # The call it admitted may still be running: its reservation, and only that, stays held.
    rows = sql(database_url, "SELECT request_id, amount FROM held_reservations WHERE key_id = $1", key)
    assert [(r["request_id"], r["amount"]) for r in rows] == [("x", Decimal("0.01"))]
