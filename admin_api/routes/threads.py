"""/admin/thread/*: every key's requests and answers (the /user twins live in user.py)."""

from __future__ import annotations

import asyncpg
from fastapi import APIRouter, Depends

from admin_api import queries
from admin_api.deps import OptionalQueryId, PagingDep, PathId, PoolDep, QueryId, SearchDep, require_admin
from admin_api.envelope import ApiError, EnvelopeResponse, ok
from admin_api.inputs import AdminRoute

__all__ = ["router", "thread_detail"]

router = APIRouter(prefix="/admin/thread", dependencies=[Depends(require_admin)], route_class=AdminRoute)


async def thread_detail(pool: asyncpg.Pool, thread_id: int, *, key_id: int | None) -> EnvelopeResponse:
    """One full thread, restricted to `key_id` when given; 404 when absent or someone else's."""
    record = await queries.get_thread(pool, thread_id, key_id=key_id)
    if record is None:
        raise ApiError(404, f"thread {thread_id} not found")
    return ok(dict(record))


@router.get("/list")
async def list_threads(
    pool: PoolDep,
    paging: PagingDep,
    q: SearchDep,
    session_id: OptionalQueryId = None,
    key_id: OptionalQueryId = None,
) -> EnvelopeResponse:
    records, total = await queries.list_threads(
        pool, session_id=session_id, key_id=key_id, q=q, limit=paging.limit, offset=paging.offset
    )
    return ok(queries.page([dict(r) for r in records], total, paging.limit, paging.offset))


@router.get("/detail/{id}")
async def thread_detail_by_path(id: PathId, pool: PoolDep) -> EnvelopeResponse:
    return await thread_detail(pool, id, key_id=None)


@router.get("/detail")
async def thread_detail_by_query(id: QueryId, pool: PoolDep) -> EnvelopeResponse:
    return await thread_detail(pool, id, key_id=None)
