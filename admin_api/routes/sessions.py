"""/admin/session/*: every key's client conversations (the /user twins live in user.py)."""

from __future__ import annotations

import asyncpg
from fastapi import APIRouter, Depends

from admin_api import queries
from admin_api.deps import OptionalQueryId, PagingDep, PathId, PoolDep, QueryId, SearchDep, require_admin
from admin_api.envelope import ApiError, EnvelopeResponse, ok
from admin_api.inputs import AdminRoute

__all__ = ["router", "session_detail"]

router = APIRouter(prefix="/admin/session", dependencies=[Depends(require_admin)], route_class=AdminRoute)


async def session_detail(pool: asyncpg.Pool, session_id: int, *, key_id: int | None) -> EnvelopeResponse:
    """One session, restricted to `key_id` when given; 404 when absent or someone else's."""
    record = await queries.get_session(pool, session_id, key_id=key_id)
    if record is None:
        raise ApiError(404, f"session {session_id} not found")
    return ok(dict(record))


@router.get("/list")
async def list_sessions(
    pool: PoolDep,
    paging: PagingDep,
    q: SearchDep,
    key_id: OptionalQueryId = None,
) -> EnvelopeResponse:
    records, total = await queries.list_sessions(
        pool, key_id=key_id, q=q, limit=paging.limit, offset=paging.offset
    )
    return ok(queries.page([dict(r) for r in records], total, paging.limit, paging.offset))


@router.get("/detail/{id}")
async def session_detail_by_path(id: PathId, pool: PoolDep) -> EnvelopeResponse:
    return await session_detail(pool, id, key_id=None)


@router.get("/detail")
async def session_detail_by_query(id: QueryId, pool: PoolDep) -> EnvelopeResponse:
    return await session_detail(pool, id, key_id=None)
