"""/admin/statistics/*: headline numbers for the manager's dashboard."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from admin_api import queries
from admin_api.deps import PoolDep, SettingsDep, require_admin
from admin_api.envelope import EnvelopeResponse, ok
from admin_api.inputs import AdminRoute
from core.quota import billing_month

__all__ = ["router"]

router = APIRouter(prefix="/admin/statistics", dependencies=[Depends(require_admin)], route_class=AdminRoute)


@router.get("/total")
async def total(pool: PoolDep, settings: SettingsDep) -> EnvelopeResponse:
    month = billing_month(settings.billing_timezone)
    start, end = queries.month_bounds(month, settings.billing_timezone)
    # One read-only snapshot, so the key counts and the active-key count describe one moment.
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        totals = await queries.key_totals(conn, month)
        active_this_month = await queries.count_active_keys(conn, start, end)
    return ok(
        {
            "count_key": totals["count_key"],
            "active_key": totals["active_key"],
            "active_key_this_month": active_this_month,
            "total_fee": totals["total_fee"],
            "total_month_fee": totals["total_month_fee"],
        }
    )
