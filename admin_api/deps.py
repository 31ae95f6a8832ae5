"""Request dependencies: the database pool, the settings, and who is calling.

The caller comes from the headers Envoy adds after authz admitted the request; Envoy strips
any `x-brproxy-*` header a client sent, so these are trusted. Authz already keeps
non-admins off /admin/*; the role checks here repeat that rule (defense in depth), so a
misrouted request or a future authz bug cannot reach the admin routes.

Every dependency is `async def` although none awaits: FastAPI runs a plain `def` dependency
in a worker thread, a needless hop on every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Path, Query, Request
from pydantic import BeforeValidator

from admin_api.envelope import ApiError
from admin_api.inputs import param_integer
from core.internal_headers import KEY_ID, KEY_ROLE, ROLE_BOOTSTRAP
from core.settings import Settings

__all__ = [
    "MAX_BIGINT",
    "AdminCaller",
    "Caller",
    "CallerDep",
    "OptionalQueryId",
    "Paging",
    "PagingDep",
    "PathId",
    "PoolDep",
    "QueryId",
    "SearchDep",
    "SettingsDep",
    "UserCaller",
    "get_caller",
    "require_admin",
    "require_user",
]

MAX_BIGINT = 2**63 - 1
"""Largest Postgres bigint: ids and offsets beyond it are bad input, not a database error."""

_ParamInteger = BeforeValidator(param_integer)
PathId = Annotated[int, _ParamInteger, Path(ge=1, le=MAX_BIGINT)]
"""A row id in the path (`/detail/:id`): digits only, within bigint."""
QueryId = Annotated[int, _ParamInteger, Query(ge=1, le=MAX_BIGINT)]
OptionalQueryId = Annotated[int | None, _ParamInteger, Query(ge=1, le=MAX_BIGINT)]
"""A filter by id (`key_id`, `session_id`); absent means no filter."""

ROLE_USER = "user"
ROLE_ADMIN = "admin"
_ROLES = frozenset({ROLE_USER, ROLE_ADMIN, ROLE_BOOTSTRAP})


@dataclass(frozen=True, slots=True)
class Caller:
    """The key a request was admitted with: its id (0 for the bootstrap key) and role."""

    key_id: int
    role: str


async def get_pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_caller(request: Request) -> Caller:
    """The caller named by Envoy's headers; 401 when they are missing or malformed."""
    raw_id = request.headers.get(KEY_ID)
    role = request.headers.get(KEY_ROLE)
    if raw_id is None or role is None:
        raise ApiError(401, "missing caller identity: requests must come through the gateway")
    if role not in _ROLES or not raw_id.isascii() or not raw_id.isdigit() or int(raw_id) > MAX_BIGINT:
        raise ApiError(401, "malformed caller identity")
    return Caller(key_id=int(raw_id), role=role)


PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CallerDep = Annotated[Caller, Depends(get_caller)]


async def require_admin(caller: CallerDep) -> Caller:
    """/admin/*: a real admin key, or the bootstrap key (which exists to create the first admin)."""
    if caller.role not in (ROLE_ADMIN, ROLE_BOOTSTRAP):
        raise ApiError(403, "this route needs an admin key")
    return caller


async def require_user(caller: CallerDep) -> Caller:
    """/user/*: any real key. The bootstrap key has no key row, so it has nothing to show here."""
    if caller.role not in (ROLE_USER, ROLE_ADMIN):
        raise ApiError(403, "the bootstrap key can only be used on /admin routes")
    return caller


AdminCaller = Annotated[Caller, Depends(require_admin)]
UserCaller = Annotated[Caller, Depends(require_user)]


@dataclass(frozen=True, slots=True)
class Paging:
    limit: int
    offset: int


async def get_paging(
    limit: Annotated[int, _ParamInteger, Query(ge=1, le=1000)] = 20,
    offset: Annotated[int, _ParamInteger, Query(ge=0, le=MAX_BIGINT)] = 0,
) -> Paging:
    return Paging(limit=limit, offset=offset)


PagingDep = Annotated[Paging, Depends(get_paging)]


async def get_search(q: Annotated[str | None, Query(max_length=200)] = None) -> str | None:
    """The `q` filter; an empty string means no filter."""
    return q or None


SearchDep = Annotated[str | None, Depends(get_search)]
