"""The money admission rule: billing months per time zone, the month fee, out-of-money."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from core.quota import billing_month, effective_month_fee, is_out_of_money


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("tz", "now", "month"),
    [
        pytest.param(
            "UTC", utc("2025-01-31T23:59:59.999999"), dt.date(2025, 1, 1), id="utc-last-microsecond"
        ),
        pytest.param("UTC", utc("2025-02-01T00:00:00"), dt.date(2025, 2, 1), id="utc-first-instant"),
        pytest.param(
            "Asia/Tokyo", utc("2025-01-31T14:59:59"), dt.date(2025, 1, 1), id="tokyo-before-midnight"
        ),
        pytest.param("Asia/Tokyo", utc("2025-01-31T15:00:00"), dt.date(2025, 2, 1), id="tokyo-ahead-of-utc"),
        pytest.param(
            "America/Los_Angeles",
            utc("2025-03-01T07:59:59"),
            dt.date(2025, 2, 1),
            id="los-angeles-still-february",
        ),
        pytest.param(
            "America/Los_Angeles", utc("2025-03-01T08:00:00"), dt.date(2025, 3, 1), id="los-angeles-march"
        ),
        pytest.param(
            "America/New_York",
            utc("2024-11-01T03:59:59"),
            dt.date(2024, 10, 1),
            id="new-york-daylight-time-offset",
        ),
        pytest.param(
            "America/New_York",
            utc("2024-12-01T04:59:59"),
            dt.date(2024, 11, 1),
            id="new-york-standard-time-offset",
        ),
        pytest.param(
            "Pacific/Kiritimati", utc("2024-12-31T10:00:00"), dt.date(2025, 1, 1), id="utc+14-new-year-early"
        ),
        pytest.param(
            "Pacific/Pago_Pago", utc("2025-01-01T10:59:59"), dt.date(2024, 12, 1), id="utc-11-still-december"
        ),
        pytest.param(
            "Asia/Kolkata", utc("2024-02-29T18:29:59"), dt.date(2024, 2, 1), id="half-hour-zone-leap-day"
        ),
        pytest.param(
            "Asia/Kolkata", utc("2024-02-29T18:30:00"), dt.date(2024, 3, 1), id="half-hour-zone-march"
        ),
        pytest.param(
            "Europe/London", utc("2025-03-31T23:00:00"), dt.date(2025, 4, 1), id="london-summer-time"
        ),
        pytest.param(
            "UTC",
            dt.datetime(2025, 7, 1, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=9))),
            dt.date(2025, 6, 1),
            id="aware-non-utc-input",
        ),
    ],
)
def test_billing_month(tz: str, now: dt.datetime, month: dt.date) -> None:
    assert billing_month(tz, now) == month


def test_billing_month_defaults_to_now() -> None:
    before = dt.datetime.now(dt.UTC)
    month = billing_month("UTC")
    after = dt.datetime.now(dt.UTC)
    assert month in {dt.date(before.year, before.month, 1), dt.date(after.year, after.month, 1)}


JUNE, MAY, JULY = dt.date(2025, 6, 1), dt.date(2025, 5, 1), dt.date(2025, 7, 1)


@pytest.mark.parametrize(
    ("fee_month", "expected"),
    [
        pytest.param(JUNE, Decimal("7.5"), id="same-month-kept"),
        pytest.param(MAY, Decimal(0), id="last-month-reset"),
        pytest.param(JULY, Decimal(0), id="other-month-reset"),
        pytest.param(dt.date(2024, 6, 1), Decimal(0), id="same-month-last-year-reset"),
    ],
)
def test_effective_month_fee(fee_month: dt.date, expected: Decimal) -> None:
    assert effective_month_fee(Decimal("7.5"), fee_month, JUNE) == expected


D = Decimal


@pytest.mark.parametrize(
    ("quota", "fee", "fee_month", "balance", "reserved", "out"),
    [
        pytest.param(D(0), D(0), JUNE, D(0), D(0), True, id="new-key-no-quota-no-balance"),
        pytest.param(D(10), D(0), JUNE, D(0), D(0), False, id="quota-untouched"),
        pytest.param(D(10), D("9.999999"), JUNE, D(0), D(0), False, id="quota-almost-used"),
        pytest.param(D(10), D(10), JUNE, D(0), D(0), True, id="quota-used-exactly-no-balance"),
        pytest.param(D(10), D(12), JUNE, D(-2), D(0), True, id="overspent-negative-balance"),
        pytest.param(D(10), D(10), JUNE, D("0.000001"), D(0), False, id="quota-used-tiny-balance"),
        pytest.param(D(10), D(15), JUNE, D(5), D(0), False, id="overspent-into-positive-balance"),
        pytest.param(D(0), D(0), JUNE, D(5), D(0), False, id="balance-only"),
        pytest.param(D(0), D(0), JUNE, D(-1), D(0), True, id="negative-balance-no-quota"),
        pytest.param(D(10), D(3), JUNE, D(-100), D(0), False, id="negative-balance-but-quota-left"),
        pytest.param(D(10), D(10), MAY, D(0), D(0), False, id="last-month-fee-resets"),
        pytest.param(D(10), D(50), MAY, D(-40), D(0), False, id="last-month-overspend-resets-quota"),
        # reserved: spend committed to requests still in flight
        pytest.param(D(10), D(5), JUNE, D(0), D("4.99"), False, id="reserved-below-remaining-quota"),
        pytest.param(D(10), D(5), JUNE, D(0), D(5), True, id="reserved-equals-remaining-quota"),
        pytest.param(D(10), D(5), JUNE, D("0.01"), D(5), False, id="reserved-equals-quota-balance-left"),
        pytest.param(D(10), D(5), JUNE, D(1), D(6), True, id="reserved-eats-balance-exactly"),
        pytest.param(D(10), D(5), JUNE, D("1.01"), D(6), False, id="reserved-leaves-some-balance"),
        pytest.param(D(10), D(10), MAY, D(0), D(9), False, id="reserved-after-month-reset"),
        pytest.param(D(10), D(10), MAY, D(0), D(10), True, id="reserved-fills-reset-quota"),
        pytest.param(D(0), D(0), JUNE, D(3), D("2.99"), False, id="reserved-below-balance"),
        pytest.param(D(0), D(0), JUNE, D(3), D(3), True, id="reserved-equals-balance"),
        pytest.param(D(10), D(15), JUNE, D(5), D(5), True, id="overspent-and-reserved-equals-balance"),
    ],
)
def test_is_out_of_money(
    quota: Decimal, fee: Decimal, fee_month: dt.date, balance: Decimal, reserved: Decimal, out: bool
) -> None:
    assert is_out_of_money(quota, fee, fee_month, balance, JUNE, reserved) is out


def test_is_out_of_money_reserved_defaults_to_zero() -> None:
    assert is_out_of_money(D(10), D(9), JUNE, D(0), JUNE) is False
    assert is_out_of_money(D(10), D(10), JUNE, D(0), JUNE) is True
