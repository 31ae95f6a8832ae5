"""Local permits of the shared rate limiter."""

from __future__ import annotations

import pytest

from authz.rate_limit import RateLimiter, lease_size, window_of


@pytest.mark.parametrize(
    ("limit", "lease"),
    [pytest.param(1, 1, id="one"), pytest.param(19, 1, id="small"), pytest.param(600, 30, id="large")],
)
def test_lease_size(limit: int, lease: int) -> None:
    assert lease_size(limit) == lease


def test_windows_are_whole_minutes() -> None:
    assert window_of(120.0) == 120
    assert window_of(179.9) == 120


def test_permits_belong_to_their_window() -> None:
    limiter = RateLimiter()
    assert not limiter.try_take(1, 60)
    limiter.add(1, 60, 2)
    assert limiter.try_take(1, 60)
    assert limiter.try_take(1, 60)
    assert not limiter.try_take(1, 60)
    limiter.add(1, 60, 1)
    assert not limiter.try_take(1, 120)  # a new window: last minute's permits are gone
    limiter.add(1, 120, 1)
    assert limiter.try_take(1, 120)
