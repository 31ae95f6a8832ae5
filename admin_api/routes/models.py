"""/admin/model/*: the model catalogue as admins edit it, and per-key model allowlists.

The built-in catalogue lives in code (`core/catalogue.py`); `model_overrides` holds what admins
changed or added, one row per model, a NULL column meaning "the built-in value". Every edit is
checked by building the whole catalogue with it before it is written, so an invalid price,
a clashing alias or an incomplete new model is a 400 and never reaches the translators and
meters, which reload the catalogue on the change notification within a second.

`key_model_access` holds optional allowlists: a key with one may call only those models
(`/v1/models` lists only them; other models are a 403).
"""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from admin_api.deps import PagingDep, PoolDep, QueryId, SearchDep, require_admin
from admin_api.envelope import ApiError, EnvelopeResponse, ok
from admin_api.inputs import AdminRoute
from admin_api.queries import page
from admin_api.schemas import BodyInteger, KeyId, NonNegativeMoney
from core.catalogue import CATALOGUE, Catalogue, ModelEntry
from core.catalogue_store import OVERRIDE_COLUMNS, load_catalogue_state, override_from_row

__all__ = ["router"]

router = APIRouter(prefix="/admin/model", dependencies=[Depends(require_admin)], route_class=AdminRoute)

ModelName = Annotated[str, Field(min_length=1, max_length=200)]
_Names = Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=500)]
_SETTINGS = OVERRIDE_COLUMNS[1:]
_LOCK = "LOCK TABLE model_overrides IN SHARE ROW EXCLUSIVE MODE"
# Column names come from the constant OVERRIDE_COLUMNS, never from input.
_SELECT_OVERRIDES = f"SELECT {', '.join(OVERRIDE_COLUMNS)} FROM model_overrides"  # noqa: S608
_UPSERT = (
    f"INSERT INTO model_overrides ({', '.join(OVERRIDE_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(OVERRIDE_COLUMNS) + 1))}) "
    f"ON CONFLICT (name) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in _SETTINGS)}, "
    "updated_at = now()"
)


class UpdateModelRequest(BaseModel):
    """`POST /admin/model/update`: a field left out keeps its current value, `null` restores
    the built-in one. A name that is not built in adds a model (then `base_id`, `provider`,
    `price_input` and `price_output` are required). Prices are USD per million tokens."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: ModelName
    base_id: Annotated[str, Field(min_length=3, max_length=200)] | None = None
    provider: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    kind: str | None = None
    aliases: _Names | None = None
    profiles: _Names | None = None
    profile_only: StrictBool | None = None
    geo_premium: StrictBool | None = None
    capabilities: _Names | None = None
    betas: _Names | None = None
    context_window: Annotated[BodyInteger, Field(ge=1, le=100_000_000)] | None = None
    price_input: NonNegativeMoney | None = None
    price_output: NonNegativeMoney | None = None
    price_cache_read: NonNegativeMoney | None = None
    price_cache_write: NonNegativeMoney | None = None
    enabled: StrictBool | None = None


class ResetModelRequest(BaseModel):
    """`POST /admin/model/reset`: drop an admin's changes (a built-in model gets its defaults
    back, an added model is removed)."""

    model_config = ConfigDict(str_strip_whitespace=True)

    name: ModelName


class AccessRequest(BaseModel):
    """`POST /admin/model/access`: the models a key may call (names or aliases); `null` lifts
    the restriction."""

    key_id: KeyId
    models: _Names | None


def model_row(entry: ModelEntry, overridden: set[str]) -> dict[str, Any]:
    """A model as the admin API shows it: every effective setting, and where it comes from."""
    return {
        "name": entry.name,
        "base_id": entry.base_id,
        "provider": entry.provider,
        "kind": entry.kind,
        "aliases": list(entry.aliases),
        "profiles": list(entry.profiles),
        "profile_only": entry.profile_only,
        "geo_premium": entry.geo_premium,
        "capabilities": sorted(entry.capabilities),
        "betas": sorted(entry.betas),
        "context_window": entry.context_window,
        "price_input": entry.prices.input,
        "price_output": entry.prices.output,
        "price_cache_read": entry.prices.cache_read,
        "price_cache_write": entry.prices.cache_write,
        "enabled": entry.enabled,
        "source": "builtin" if CATALOGUE.entry(entry.name) is not None else "custom",
        "overridden": entry.name in overridden,
    }


async def _current(conn: asyncpg.Connection) -> tuple[Catalogue, set[str]]:
    try:
        state = await load_catalogue_state(conn)
    except ValueError as error:  # a hand-edited row; say so rather than fail with a 500
        raise ApiError(500, f"the stored model catalogue is invalid: {error}") from None
    overridden = {row["name"] for row in await conn.fetch("SELECT name FROM model_overrides")}
    return state.catalogue, overridden


def _matches(entry: ModelEntry, q: str | None) -> bool:
    if not q:
        return True
    needle = q.lower()
    return any(
        needle in value.lower() for value in (entry.name, entry.base_id, entry.provider, *entry.aliases)
    )


@router.get("/list")
async def list_models(pool: PoolDep, paging: PagingDep, q: SearchDep) -> EnvelopeResponse:
    async with pool.acquire() as conn:
        catalogue, overridden = await _current(conn)
    rows = [model_row(e, overridden) for e in catalogue.entries if _matches(e, q)]
    return ok(
        page(rows[paging.offset : paging.offset + paging.limit], len(rows), paging.limit, paging.offset)
    )


async def _detail(pool: asyncpg.Pool, name: str) -> EnvelopeResponse:
    async with pool.acquire() as conn:
        catalogue, overridden = await _current(conn)
    entry = catalogue.entry(name)
    if entry is None:
        raise ApiError(404, f"model {name} not found")
    return ok(model_row(entry, overridden))


@router.get("/detail")
async def model_detail_query(
    pool: PoolDep, name: Annotated[str, Query(min_length=1, max_length=200)]
) -> EnvelopeResponse:
    return await _detail(pool, name)


@router.get("/detail/{name}")
async def model_detail(
    pool: PoolDep, name: Annotated[str, Path(min_length=1, max_length=200)]
) -> EnvelopeResponse:
    return await _detail(pool, name)


def _merged(existing: dict[str, Any] | None, body: UpdateModelRequest) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(_SETTINGS) if existing is None else dict(existing)
    row["name"] = body.name
    for column in body.model_fields_set - {"name"}:
        value = getattr(body, column)
        row[column] = list(dict.fromkeys(value)) if isinstance(value, list) else value
    return row


@router.post("/update")
async def update_model(body: UpdateModelRequest, pool: PoolDep) -> EnvelopeResponse:
    async with pool.acquire() as conn, conn.transaction():
        # One edit at a time: each is validated against the catalogue the others left.
        await conn.execute(_LOCK)
        rows = {r["name"]: dict(r) for r in await conn.fetch(_SELECT_OVERRIDES)}
        current, _ = await _current(conn)
        named = current.entry(body.name)
        if named is not None and named.name != body.name:
            raise ApiError(400, f"name: {body.name} is an alias of {named.name}; edit {named.name}")
        rows[body.name] = _merged(rows.get(body.name), body)
        try:
            catalogue = CATALOGUE.with_overrides(override_from_row(row) for row in rows.values())
        except ValueError as error:
            raise ApiError(400, str(error)) from None
        row = rows[body.name]
        await conn.execute(_UPSERT, *(row[column] for column in OVERRIDE_COLUMNS))
    entry = catalogue.entry(body.name)
    assert entry is not None
    return ok(model_row(entry, set(rows)))


@router.post("/reset")
async def reset_model(body: ResetModelRequest, pool: PoolDep) -> EnvelopeResponse:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_LOCK)
        deleted = await conn.fetchval("DELETE FROM model_overrides WHERE name = $1 RETURNING name", body.name)
        if deleted is None:
            raise ApiError(404, f"model {body.name} has no changes to reset")
        try:
            catalogue, overridden = await _current(conn)
        except ApiError:
            raise ApiError(400, "resetting this model would leave the catalogue invalid") from None
    entry = catalogue.entry(body.name)
    return ok(model_row(entry, overridden) if entry is not None else {"name": body.name, "removed": True})


@router.get("/access")
async def get_access(pool: PoolDep, key_id: QueryId) -> EnvelopeResponse:
    async with pool.acquire() as conn:
        if await conn.fetchval("SELECT 1 FROM api_keys WHERE id = $1", key_id) is None:
            raise ApiError(404, f"api key {key_id} not found")
        models = await conn.fetchval("SELECT models FROM key_model_access WHERE key_id = $1", key_id)
    return ok({"key_id": key_id, "models": list(models) if models is not None else None})


@router.post("/access")
async def set_access(body: AccessRequest, pool: PoolDep) -> EnvelopeResponse:
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval("SELECT 1 FROM api_keys WHERE id = $1", body.key_id) is None:
            raise ApiError(404, f"api key {body.key_id} not found")
        if body.models is None:
            await conn.execute("DELETE FROM key_model_access WHERE key_id = $1", body.key_id)
            return ok({"key_id": body.key_id, "models": None})
        catalogue, _ = await _current(conn)
        names: list[str] = []
        for name in body.models:
            resolved = catalogue.resolve(name)
            if resolved is None:
                raise ApiError(400, f"models: unknown model {name}")
            names.append(resolved.entry.name)
        names = list(dict.fromkeys(names))
        await conn.execute(
            "INSERT INTO key_model_access (key_id, models) VALUES ($1, $2) "
            "ON CONFLICT (key_id) DO UPDATE SET models = EXCLUDED.models, updated_at = now()",
            body.key_id,
            names,
        )
    return ok({"key_id": body.key_id, "models": names})
