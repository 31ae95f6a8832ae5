"""The catalogue as admins edited it: built-in entries plus `model_overrides`, and key allowlists.

`load_catalogue_state` reads both tables once; `CatalogueFollower` keeps a process's copy
current. It LISTENs on `brproxy_catalogue_changed` (a trigger announces every change to either
table) and reloads everything then, so an admin's edit reaches every translator and meter
within milliseconds. As the key cache in authz does, it subscribes *before* it loads, reloads
after any reconnect, and also reloads on a timer as a safety net. Until the first load (or
without a database) the built-in catalogue is used.

The state is one immutable object swapped whole, so a request sees one consistent catalogue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from core.catalogue import CATALOGUE, Catalogue, ModelEntry, ModelOverride
from core.pg_listen import follow_channel

__all__ = [
    "CHANNEL",
    "OVERRIDE_COLUMNS",
    "CatalogueFollower",
    "CatalogueState",
    "load_catalogue_state",
    "override_from_row",
]

log = logging.getLogger("core.catalogue")

CHANNEL = "brproxy_catalogue_changed"

OVERRIDE_COLUMNS = (
    "name",
    "base_id",
    "provider",
    "kind",
    "aliases",
    "profiles",
    "profile_only",
    "geo_premium",
    "capabilities",
    "betas",
    "context_window",
    "price_input",
    "price_output",
    "price_cache_read",
    "price_cache_write",
    "enabled",
)
"""The columns of `model_overrides` that hold a model's settings, as named on ModelOverride."""

# The column list is the constant above, never input.
_SELECT_OVERRIDES = f"SELECT {', '.join(OVERRIDE_COLUMNS)} FROM model_overrides ORDER BY name"  # noqa: S608
_SELECT_ACCESS = "SELECT key_id, models FROM key_model_access"


def _tuple(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(v) for v in value)


def _set(value: Any) -> frozenset[str] | None:
    return None if value is None else frozenset(str(v) for v in value)


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def override_from_row(row: Mapping[str, Any]) -> ModelOverride:
    """A `model_overrides` row (or a dict with the same keys) as a ModelOverride."""
    return ModelOverride(
        name=str(row["name"]),
        base_id=row.get("base_id"),
        provider=row.get("provider"),
        kind=row.get("kind"),
        aliases=_tuple(row.get("aliases")),
        profiles=_tuple(row.get("profiles")),
        profile_only=row.get("profile_only"),
        geo_premium=row.get("geo_premium"),
        capabilities=_set(row.get("capabilities")),
        betas=_set(row.get("betas")),
        context_window=row.get("context_window"),
        price_input=_decimal(row.get("price_input")),
        price_output=_decimal(row.get("price_output")),
        price_cache_read=_decimal(row.get("price_cache_read")),
        price_cache_write=_decimal(row.get("price_cache_write")),
        enabled=row.get("enabled"),
    )


@dataclass(frozen=True, slots=True)
class CatalogueState:
    """One consistent view: the effective catalogue and every key's model allowlist."""

    catalogue: Catalogue = CATALOGUE
    allowlists: Mapping[int, frozenset[str]] = field(default_factory=dict)
    """Key id → the catalogue names it may call; keys not listed may call every model."""

    def allows(self, key_id: int, entry: ModelEntry) -> bool:
        allowed = self.allowlists.get(key_id)
        return allowed is None or entry.name in allowed

    def allowed_models(self, key_id: int) -> list[ModelEntry]:
        """The enabled models a key may call, in catalogue order."""
        return [e for e in self.catalogue.entries if e.enabled and self.allows(key_id, e)]


async def load_catalogue_state(
    connection: asyncpg.Connection, builtin: Catalogue = CATALOGUE
) -> CatalogueState:
    """Read both tables and build the effective state; raises ValueError for invalid overrides."""
    rows = await connection.fetch(_SELECT_OVERRIDES)
    access = await connection.fetch(_SELECT_ACCESS)
    catalogue = builtin.with_overrides(override_from_row(dict(row)) for row in rows)
    allowlists = {int(row["key_id"]): frozenset(row["models"]) for row in access}
    return CatalogueState(catalogue, allowlists)


class CatalogueFollower:
    """A process's current CatalogueState, kept in step with the database in the background."""

    def __init__(
        self,
        database_url: str | None,
        builtin: Catalogue = CATALOGUE,
        *,
        resync_interval_s: float = 30.0,
    ) -> None:
        self._database_url = database_url
        self._builtin = builtin
        self._resync_interval_s = resync_interval_s
        self.state = CatalogueState(builtin)
        self._task: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()
        self._changed = asyncio.Event()

    @property
    def catalogue(self) -> Catalogue:
        return self.state.catalogue

    async def start(self, first_load_timeout: float = 5.0) -> None:
        """Start following; waits (up to the timeout) for the first load so prices are current."""
        if self._database_url is None:
            return
        self._task = asyncio.create_task(self._follow(), name="catalogue-follower")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._loaded.wait(), first_load_timeout)
        if not self._loaded.is_set():
            log.warning("model catalogue not loaded from the database yet; using the built-in one")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_notify(self, _conn: object, _pid: int, _channel: str, _payload: str) -> None:
        self._changed.set()

    async def _follow(self) -> None:
        assert self._database_url is not None
        await follow_channel(
            self._database_url, CHANNEL, self._on_notify, self._session, log=log, what="catalogue follower"
        )

    async def _session(self, connection: asyncpg.Connection) -> None:
        while not connection.is_closed():
            self._changed.clear()
            await self._reload(connection)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self._resync_interval_s)

    async def _reload(self, connection: asyncpg.Connection) -> None:
        try:
            self.state = await load_catalogue_state(connection, self._builtin)
        except ValueError as error:
            # The admin API validates every edit, so this means a hand-edited row: keep
            # serving the last good catalogue rather than none.
            log.error("ignored an invalid model catalogue in the database: %s", error)
        self._loaded.set()
