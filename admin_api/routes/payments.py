"""/admin/payment/*: the recharge history (one row per recharge or opening balance)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from admin_api import queries
from admin_api.deps import MAX_BIGINT, PagingDep, PoolDep, require_admin
from admin_api.envelope import EnvelopeResponse, ok

__all__ = ["router"]

router = APIRouter(prefix="/admin/payment", dependencies=[Depends(require_admin)])


@router.get("/list")
async def list_payments(
    pool: PoolDep,
    paging: PagingDep,
    key_id: Annotated[int | None, Query(ge=1, le=MAX_BIGINT)] = None,
) -> EnvelopeResponse:
    records, total = await queries.list_payments(
        pool, key_id=key_id, limit=paging.limit, offset=paging.offset
    )
    return ok(queries.page([dict(r) for r in records], total, paging.limit, paging.offset))
