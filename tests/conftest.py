"""Fixtures shared by every test: one Postgres, from one of three sources.

1. A URL in the environment (`BRPROXY_TEST_DATABASE_URL`, else `DATABASE_URL`): used as is.
2. Else a throwaway container via `testcontainers`, where a Docker engine answers.
3. Else the embedded PostgreSQL from the `pgserver` wheel, in a temporary directory.

Each test module that needs a database gets a fresh one (created in that server, with the
schema migrated), so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from local_ports import free_port

from brproxy.child_process import die_with_parent
from brproxy.embedded_postgres import EmbeddedPostgres
from core.migrate import apply_migrations


class PostgresServer:
    """A Postgres server the tests may create databases in."""

    def __init__(self, url: str, source: str) -> None:
        self.url = url
        self.source = source

    def _with_database(self, name: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path="/" + name))

    async def _create(self) -> str:
        name = "brproxy_test_" + uuid.uuid4().hex[:12]
        connection = await asyncpg.connect(self.url)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.InsufficientPrivilegeError:
            return self.url  # no CREATEDB right: share the given database
        finally:
            await connection.close()
        return self._with_database(name)

    def new_database(self) -> str:
        """A fresh database with BRProxy's schema applied; returns its URL."""

        async def create_and_migrate() -> str:
            url = await self._create()
            await apply_migrations(url)
            return url

        return asyncio.run(create_and_migrate())


def _docker_reachable() -> bool:
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    import docker  # installed with testcontainers

    try:
        client = docker.from_env(timeout=3)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except docker.errors.DockerException:
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    url = os.environ.get("BRPROXY_TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        yield PostgresServer(url, "environment")
        return
    if _docker_reachable():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield PostgresServer(container.get_connection_url(), "testcontainers")
        return
    with tempfile.TemporaryDirectory(prefix="brproxy-test-pg-") as tmp:
        pg = EmbeddedPostgres(Path(tmp), free_port())
        pg.ensure_initialised()
        process = subprocess.Popen(
            pg.command(),
            preexec_fn=die_with_parent(signal.SIGINT, then=pg.preexec()),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            pg.wait_ready(alive=lambda: process.poll() is None)
            asyncio.run(pg.ensure_database())
            yield PostgresServer(pg.url(), "embedded")
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def database_url(postgres_server: PostgresServer) -> str:
    """A fresh, migrated database for one test module."""
    return postgres_server.new_database()
