"""Schema migrations against a real Postgres: idempotent, and safe to run concurrently."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from core.migrate import apply_migrations, load_migrations

ALL_NAMES = [m.name for m in load_migrations()]
TABLES = {"api_keys", "payments", "sessions", "threads", "schema_migrations"}


def test_load_migrations_are_ordered_and_well_named() -> None:
    migrations = load_migrations()
    assert migrations, "no migrations shipped"
    assert migrations[0].name == "0001_initial.sql"
    versions = [m.version for m in migrations]
    assert versions == sorted(set(versions))
    for migration in migrations:
        assert re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", migration.name)
        assert int(migration.name[:4]) == migration.version
        assert migration.sql.strip()


async def _tables(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await connection.close()


async def _recorded(url: str) -> list[tuple[int, str]]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        return [(r["version"], r["name"]) for r in rows]
    finally:
        await connection.close()


async def test_the_fixture_database_is_fully_migrated_and_a_rerun_applies_nothing(database_url: str) -> None:
    assert await apply_migrations(database_url) == []
    assert await _recorded(database_url) == [(m.version, m.name) for m in load_migrations()]


@pytest.fixture
async def empty_database(postgres_server: Any) -> AsyncIterator[str]:
    """A brand-new database with no schema at all (dropped afterwards)."""
    server_url: str = postgres_server.url
    name = "brproxy_migrate_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(server_url)
    try:
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.InsufficientPrivilegeError:
            pytest.skip("the test server does not allow CREATE DATABASE")
    finally:
        await admin.close()
    yield urlunsplit(urlsplit(server_url)._replace(path="/" + name))
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_applying_twice_applies_nothing_the_second_time(empty_database: str) -> None:
    assert await _tables(empty_database) == set()
    assert await apply_migrations(empty_database) == ALL_NAMES
    assert await _tables(empty_database) >= TABLES
    assert await apply_migrations(empty_database) == []
    assert await _recorded(empty_database) == [(m.version, m.name) for m in load_migrations()]


async def test_concurrent_runners_apply_each_migration_exactly_once(empty_database: str) -> None:
    results = await asyncio.gather(*(apply_migrations(empty_database) for _ in range(3)))
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(ALL_NAMES)  # every migration once, by exactly one runner
    assert await _recorded(empty_database) == [(m.version, m.name) for m in load_migrations()]
    assert await _tables(empty_database) >= TABLES
    assert await apply_migrations(empty_database) == []
