"""Fixtures for the admin API tests: the app on a fresh database, reached as Envoy would.

Each test module gets its own migrated database (the `database_url` fixture) and one app
with its lifespan running (pool and health-check clients open). Requests carry the
deployment's internal token and the `x-brproxy-key-*` headers Envoy adds after authz
admitted them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from admin_api_support import FROM_THE_EDGE, TEST_INTERNAL_TOKEN
from fastapi import FastAPI
from local_ports import free_port

from admin_api import create_app
from core.settings import Settings


@pytest.fixture(scope="module")
def settings(database_url: str) -> Settings:
    # Free ports, bound and released at once: nothing listens there, so those health parts are down.
    return Settings(
        database_url=database_url,
        authz_port=free_port(),
        translator_port=free_port(),
        meter_port=free_port(),
        billing_timezone="UTC",
        internal_token=TEST_INTERNAL_TOKEN,
    )


@pytest.fixture(scope="module")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan running: the pool and the health-check clients are open."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://admin-api", headers=FROM_THE_EDGE
    ) as client:
        yield client


@pytest.fixture(scope="module")
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection, to arrange rows and to check what the API wrote."""
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()
