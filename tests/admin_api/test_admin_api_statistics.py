"""/admin/statistics/total (admin_api/routes/statistics.py), on a database of its own."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import asyncpg
import httpx
import pytest
from admin_api_support import BOOTSTRAP, as_admin, as_user, error_message, insert_key, insert_thread, ok_data

from admin_api.queries import month_bounds
from core.quota import billing_month


async def test_totals(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    empty = ok_data(await client.get("/admin/statistics/total", headers=as_admin()))
    assert empty == {
        "count_key": 0,
        "active_key": 0,
        "active_key_this_month": 0,
        "total_fee": 0,
        "total_month_fee": 0,
    }

    this_month = billing_month("UTC")
    last_month = (this_month - dt.timedelta(days=1)).replace(day=1)
    start, _ = month_bounds(this_month, "UTC")
    busy = await insert_key(db, "busy", month_fee=Decimal("3"), total_fee=Decimal("10"))
    stale = await insert_key(
        db, "stale", month_fee=Decimal("2"), fee_month=last_month, total_fee=Decimal("5.5"), disabled=True
    )
    quiet = await insert_key(db, "quiet")
    await insert_key(db, "off", disabled=True, month_fee=Decimal("0.25"), total_fee=Decimal("0.25"))
    await insert_thread(db, busy, created_at=start)  # the first instant of the month counts
    await insert_thread(db, busy)
    await insert_thread(db, stale, created_at=start - dt.timedelta(microseconds=1))  # last month
    await insert_thread(db, quiet, created_at=start + dt.timedelta(days=1))

    data = ok_data(await client.get("/admin/statistics/total", headers=BOOTSTRAP))

    assert data == {
        "count_key": 4,
        "active_key": 2,  # busy, quiet: not disabled
        "active_key_this_month": 2,  # busy, quiet: a thread since the month began
        "total_fee": 15.75,
        "total_month_fee": 3.25,  # stale's 2 belongs to last month
    }


@pytest.mark.parametrize(
    ("month", "tz", "start", "end"),
    [
        pytest.param(
            dt.date(2026, 3, 1), "UTC", "2026-03-01T00:00:00+00:00", "2026-04-01T00:00:00+00:00", id="utc"
        ),
        pytest.param(
            dt.date(2026, 12, 1),
            "UTC",
            "2026-12-01T00:00:00+00:00",
            "2027-01-01T00:00:00+00:00",
            id="december",
        ),
        pytest.param(
            dt.date(2026, 3, 1),
            "Europe/Paris",
            "2026-03-01T00:00:00+01:00",
            "2026-04-01T00:00:00+02:00",  # summer time began in March
            id="dst-zone",
        ),
    ],
)
def test_month_bounds(month: dt.date, tz: str, start: str, end: str) -> None:
    assert [moment.isoformat() for moment in month_bounds(month, tz)] == [start, end]


@pytest.mark.parametrize(
    ("headers", "status"), [pytest.param(as_user(1), 403, id="user"), pytest.param({}, 401, id="no-headers")]
)
async def test_only_admins_may_read(client: httpx.AsyncClient, headers: dict[str, str], status: int) -> None:
    error_message(await client.get("/admin/statistics/total", headers=headers), status)
