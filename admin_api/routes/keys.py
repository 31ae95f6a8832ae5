"""/admin/api-key/*: create, edit, recharge and list keys.

The plain key exists only in the response to `apply`; the table keeps its SHA-256 and the
displayable prefix (`br-` + 4 characters).
"""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter, Depends

from admin_api import queries
from admin_api.deps import PagingDep, PathId, PoolDep, SearchDep, SettingsDep, require_admin
from admin_api.envelope import ApiError, EnvelopeResponse, ok
from admin_api.inputs import AdminRoute
from admin_api.schemas import ApplyKeyRequest, RechargeRequest, UpdateKeyRequest
from core.api_keys import display_prefix, generate_key, hash_key
from core.quota import billing_month

__all__ = ["router"]

router = APIRouter(prefix="/admin/api-key", dependencies=[Depends(require_admin)], route_class=AdminRoute)


@router.post("/apply")
async def apply_key(body: ApplyKeyRequest, pool: PoolDep, settings: SettingsDep) -> EnvelopeResponse:
    key = generate_key()
    month_quota = body.month_quota if body.month_quota is not None else Decimal(0)
    balance = body.balance if body.balance is not None else Decimal(0)
    async with pool.acquire() as conn:
        record = await queries.insert_key(
            conn,
            name=body.name,
            email=body.email or "",
            role=body.role or "user",
            group_id=body.group_id or 0,
            key_hash=hash_key(key),
            key_prefix=display_prefix(key),
            month_quota=month_quota,
            balance=balance,
            fee_month=billing_month(settings.billing_timezone),
            rate_limit_rpm=body.rate_limit_rpm or 0,
        )
    return ok(
        {
            "id": record["id"],
            "name": record["name"],
            "email": record["email"],
            "api_key": key,
            "role": record["role"],
            "month_quota": record["month_quota"],
            "balance": record["balance"],
            "rate_limit_rpm": record["rate_limit_rpm"],
        }
    )


@router.post("/update")
async def update_key(body: UpdateKeyRequest, pool: PoolDep, settings: SettingsDep) -> EnvelopeResponse:
    record = await queries.update_key(
        pool,
        body.id,
        name=body.name,
        role=body.role,
        group_id=body.group_id,
        month_quota=body.month_quota,
        email=body.email,
        disabled=body.disabled,
        rate_limit_rpm=body.rate_limit_rpm,
    )
    if record is None:
        raise ApiError(404, f"api key {body.id} not found")
    return ok(queries.key_row(record, billing_month(settings.billing_timezone)))


@router.post("/recharge")
async def recharge_key(body: RechargeRequest, pool: PoolDep, settings: SettingsDep) -> EnvelopeResponse:
    key_hash = hash_key(body.api_key) if body.api_key is not None else None
    async with pool.acquire() as conn:
        record = await queries.recharge_key(conn, body.balance, key_id=body.id, key_hash=key_hash)
    if record is None:
        # Never echo a plain key back, not even a wrong one.
        raise ApiError(
            404, "api key not found" if body.api_key is not None else f"api key {body.id} not found"
        )
    return ok(queries.key_row(record, billing_month(settings.billing_timezone)))


@router.get("/list")
async def list_keys(
    pool: PoolDep, settings: SettingsDep, paging: PagingDep, q: SearchDep
) -> EnvelopeResponse:
    records, total = await queries.list_keys(pool, q=q, limit=paging.limit, offset=paging.offset)
    month = billing_month(settings.billing_timezone)
    items = [queries.key_row(record, month) for record in records]
    return ok(queries.page(items, total, paging.limit, paging.offset))


@router.get("/detail/{id}")
async def key_detail(id: PathId, pool: PoolDep, settings: SettingsDep) -> EnvelopeResponse:
    record = await queries.get_key(pool, id)
    if record is None:
        raise ApiError(404, f"api key {id} not found")
    return ok(queries.key_row(record, billing_month(settings.billing_timezone)))
