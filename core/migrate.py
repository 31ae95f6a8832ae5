"""Versioned schema migrations, safe to run on every start and from several replicas at once.

Migrations are the files `core/migrations/NNNN_name.sql`, applied in order, each in its own
transaction together with its row in `schema_migrations`: a migration is either fully
applied and recorded, or not at all. A transaction-level advisory lock serialises
concurrent runners (two replicas starting together), and a runner that gets the lock
second sees the versions the first recorded and skips them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

__all__ = ["Migration", "apply_migrations", "load_migrations"]

_LOCK_ID = 0x62727078  # "brpx": any constant shared by every BRProxy runner
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The migrations shipped in `core/migrations`, ordered by version."""
    found = []
    for entry in resources.files("core.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


async def apply_migrations(database_url: str) -> list[str]:
    """Apply every migration not yet applied; returns the names applied now."""
    connection = await asyncpg.connect(database_url)
    applied_now: list[str] = []
    try:
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
        for migration in load_migrations():
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
                done = await connection.fetchval(
                    "SELECT 1 FROM schema_migrations WHERE version = $1", migration.version
                )
                if done:
                    continue
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
                applied_now.append(migration.name)
    finally:
        await connection.close()
    return applied_now
