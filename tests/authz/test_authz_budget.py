"""The reservation ledger: reservations within grants, releases shrink grants, expiry, idle return."""

from __future__ import annotations

from decimal import Decimal

import pytest

from authz.budget import TTL_S, Ledger
from authz.budget_store import grant_size

D = Decimal


def test_reservations_fit_within_the_grant_only() -> None:
    ledger = Ledger()
    assert not ledger.try_reserve(1, "a", D("1"))  # no grant yet
    ledger.set_grant(1, D("2.5"), released_before=D(0))
    assert ledger.try_reserve(1, "a", D("1"))
    assert ledger.try_reserve(1, "b", D("1"))
    assert not ledger.try_reserve(1, "c", D("1"))
    assert ledger.reserved(1) == D("2")
    assert ledger.needed_grant(1, D("1")) == D("3")


def test_the_same_request_reserves_once() -> None:
    ledger = Ledger()
    ledger.set_grant(1, D("1"), D(0))
    assert ledger.try_reserve(1, "a", D("1"))
    assert ledger.try_reserve(1, "a", D("1"))  # Envoy retried the check
    assert ledger.reserved(1) == D("1")


def test_release_frees_the_reservation_and_shrinks_the_grant() -> None:
    ledger = Ledger()
    ledger.set_grant(1, D("3"), D(0))
    ledger.try_reserve(1, "a", D("1"))
    assert ledger.release("a") == 1
    assert ledger.reserved(1) == 0
    # The money is billed now: the grant may no longer cover it.
    assert ledger.granted(1) == D("2")
    assert ledger.take_changed() == [1]
    assert ledger.take_changed() == []
    assert ledger.release("a") is None  # announced twice (a replayed event): no effect
    assert ledger.release("someone-elses") is None


def test_releases_during_a_grant_request_come_off_the_new_grant() -> None:
    ledger = Ledger()
    ledger.set_grant(1, D("1"), D(0))
    ledger.try_reserve(1, "a", D("1"))
    before = ledger.released_total(1)
    ledger.release("a")  # billed while the grant request was in flight
    ledger.set_grant(1, D("5"), before)
    assert ledger.granted(1) == D("4")
    assert 1 in ledger.take_changed()


def test_old_reservations_expire() -> None:
    ledger = Ledger()
    ledger.set_grant(1, D("2"), D(0))
    ledger.try_reserve(1, "old", D("1"), now=0.0)
    ledger.try_reserve(1, "new", D("1"), now=TTL_S)
    assert len(ledger.expire(now=TTL_S + 1)) == 1
    assert ledger.reserved(1) == D("1")


def test_idle_grants_are_returned_but_reservations_stay() -> None:
    ledger = Ledger()
    ledger.set_grant(1, D("10"), D(0))
    ledger.try_reserve(1, "a", D("1"), now=100.0)
    ledger.return_idle(idle_s=1.0, now=100.5)
    assert ledger.granted(1) == D("10")
    ledger.return_idle(idle_s=1.0, now=101.5)
    assert ledger.granted(1) == D("1")
    assert ledger.take_changed() == [1]


@pytest.mark.parametrize(
    ("free", "needed", "chunk", "cost", "expected"),
    [
        pytest.param("10", "1", "63", "1", "5", id="half-of-what-is-free"),
        pytest.param("1000", "1", "63", "1", "64", id="capped-by-the-chunk"),
        pytest.param("1", "1", "63", "1", "1", id="exactly-what-is-needed"),
        pytest.param("0.9", "1", "63", "1", None, id="too-little"),
        pytest.param("2.9", "1", "63", "1", "1", id="whole-requests-only"),
        pytest.param("3", "2", "63", "1", "2", id="a-reserved-request-counts-in-needed"),
    ],
)
def test_grant_size(free: str, needed: str, chunk: str, cost: str, expected: str | None) -> None:
    result = grant_size(D(free), D(needed), D(chunk), D(cost))
    assert result == (D(expected) if expected is not None else None)
