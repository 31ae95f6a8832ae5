"""/user/*: a key's own row, sessions and threads; every query is scoped to the caller's key.

Another key's session or thread is "not found" (404), so ids reveal nothing about other
users. A `key_id` query parameter naming another key is refused with 403 rather than
silently ignored, so a client bug shows up instead of returning a surprising list.
"""

from __future__ import annotations

from fastapi import APIRouter

from admin_api import queries
from admin_api.deps import (
    Caller,
    OptionalQueryId,
    PagingDep,
    PathId,
    PoolDep,
    QueryId,
    SearchDep,
    SettingsDep,
    UserCaller,
)
from admin_api.envelope import ApiError, EnvelopeResponse, ok
from admin_api.inputs import AdminRoute
from admin_api.routes.sessions import session_detail
from admin_api.routes.threads import thread_detail
from core.quota import billing_month

__all__ = ["router"]

router = APIRouter(prefix="/user", route_class=AdminRoute)


def _own_key(caller: Caller, key_id: int | None) -> int:
    if key_id is not None and key_id != caller.key_id:
        raise ApiError(403, "key_id: a key can only list its own records")
    return caller.key_id


@router.get("/api-key/mine")
async def my_key(caller: UserCaller, pool: PoolDep, settings: SettingsDep) -> EnvelopeResponse:
    record = await queries.get_key(pool, caller.key_id)
    if record is None:
        raise ApiError(404, "api key not found")
    return ok(queries.key_row(record, billing_month(settings.billing_timezone)))


@router.get("/session/list")
async def my_sessions(
    caller: UserCaller, pool: PoolDep, paging: PagingDep, q: SearchDep, key_id: OptionalQueryId = None
) -> EnvelopeResponse:
    records, total = await queries.list_sessions(
        pool, key_id=_own_key(caller, key_id), q=q, limit=paging.limit, offset=paging.offset
    )
    return ok(queries.page([dict(r) for r in records], total, paging.limit, paging.offset))


@router.get("/session/detail/{id}")
async def my_session_by_path(id: PathId, caller: UserCaller, pool: PoolDep) -> EnvelopeResponse:
    return await session_detail(pool, id, key_id=caller.key_id)


@router.get("/session/detail")
async def my_session_by_query(id: QueryId, caller: UserCaller, pool: PoolDep) -> EnvelopeResponse:
    return await session_detail(pool, id, key_id=caller.key_id)


@router.get("/thread/list")
async def my_threads(
    caller: UserCaller,
    pool: PoolDep,
    paging: PagingDep,
    q: SearchDep,
    session_id: OptionalQueryId = None,
    key_id: OptionalQueryId = None,
) -> EnvelopeResponse:
    records, total = await queries.list_threads(
        pool,
        session_id=session_id,
        key_id=_own_key(caller, key_id),
        q=q,
        limit=paging.limit,
        offset=paging.offset,
    )
    return ok(queries.page([dict(r) for r in records], total, paging.limit, paging.offset))


@router.get("/thread/detail/{id}")
async def my_thread_by_path(id: PathId, caller: UserCaller, pool: PoolDep) -> EnvelopeResponse:
    return await thread_detail(pool, id, key_id=caller.key_id)


@router.get("/thread/detail")
async def my_thread_by_query(id: QueryId, caller: UserCaller, pool: PoolDep) -> EnvelopeResponse:
    return await thread_detail(pool, id, key_id=caller.key_id)
