"""/admin/payment/*: the recharge history (one row per recharge or opening balance)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from admin_api import queries
from admin_api.deps import OptionalQueryId, PagingDep, PoolDep, require_admin
from admin_api.envelope import EnvelopeResponse, ok
from admin_api.inputs import AdminRoute

__all__ = ["router"]

router = APIRouter(prefix="/admin/payment", dependencies=[Depends(require_admin)], route_class=AdminRoute)


@router.get("/list")
async def list_payments(
    pool: PoolDep,
    paging: PagingDep,
    key_id: OptionalQueryId = None,
) -> EnvelopeResponse:
    records, total = await queries.list_payments(
        pool, key_id=key_id, limit=paging.limit, offset=paging.offset
    )
    return ok(queries.page([dict(r) for r in records], total, paging.limit, paging.offset))
