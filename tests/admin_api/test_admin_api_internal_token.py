"""The admin API answers only requests with the deployment's internal token (admin_api/app.py).

The caller headers Envoy adds (`x-brproxy-key-*`) mean nothing without it: anyone who reaches
the admin API's port could send them. Here the app runs in process (its lifespan open); the
whole stack, reached over its real ports, is in tests/e2e/test_e2e_internal_trust.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from admin_api_support import BOOTSTRAP, FROM_THE_EDGE, TEST_INTERNAL_TOKEN, as_user, insert_key
from fastapi import FastAPI

import admin_api.__main__ as entry
from core import asgi_serving
from core.internal_headers import INTERNAL_TOKEN

REFUSED = {"success": False, "data": "this service only answers requests that come through the gateway"}
WRONG = "a-well-formed-but-wrong-internal-token-0123456789"


@pytest.fixture
async def bare(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that, unlike `client`, does not send the internal token by itself."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://admin-api") as client:
        yield client


@pytest.mark.parametrize(
    "token",
    [None, WRONG, "", TEST_INTERNAL_TOKEN.upper(), TEST_INTERNAL_TOKEN + "x", "x" * 100_000],
    ids=["none", "wrong", "empty", "other-case", "longer", "huge"],
)
@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("POST", "/admin/api-key/apply", BOOTSTRAP),
        ("GET", "/admin/api-key/list", BOOTSTRAP),
        ("GET", "/user/api-key/mine", as_user(1)),
        ("GET", "/no-such-route", {}),
    ],
    ids=["apply", "list", "mine", "unknown-route"],
)
async def test_without_the_token_every_route_is_401_and_nothing_is_written(
    bare: httpx.AsyncClient,
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    headers: dict[str, str],
    token: str | None,
) -> None:
    await insert_key(db, "someone")
    keys = await db.fetchval("SELECT count(*) FROM api_keys")
    sent = headers | {"x-request-id": "req-7"} | ({} if token is None else {INTERNAL_TOKEN: token})
    with caplog.at_level(logging.INFO, logger="admin_api"):
        response = await bare.request(method, path, headers=sent, json={"name": "mallory", "role": "admin"})

    assert response.status_code == 401
    assert response.json() == REFUSED
    assert await db.fetchval("SELECT count(*) FROM api_keys") == keys
    (line,) = [r.getMessage() for r in caplog.records if r.name == "admin_api"]
    reason = "no internal token" if token is None else "wrong internal token"
    assert line.startswith(f"refused {method} '{path}': {reason} (request id 'req-7')")
    assert TEST_INTERNAL_TOKEN not in caplog.text and WRONG not in caplog.text


async def test_with_the_token_the_caller_headers_are_believed(bare: httpx.AsyncClient) -> None:
    response = await bare.get("/admin/api-key/list", headers=BOOTSTRAP | FROM_THE_EDGE)
    assert response.status_code == 200, response.text


async def test_health_stays_open_to_probes(bare: httpx.AsyncClient) -> None:
    response = await bare.get("/health")
    assert response.status_code == 503  # the other parts are down here; the answer is health's own
    assert set(response.json()["data"]["parts"]) == {"database", "authz", "translator", "meter"}


def test_main_without_an_internal_token_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRPROXY_DATABASE_URL", "postgresql://db.invalid/brproxy")
    monkeypatch.delenv("BRPROXY_INTERNAL_TOKEN", raising=False)
    monkeypatch.setattr(asgi_serving.uvicorn, "run", lambda *args, **kwargs: pytest.fail("uvicorn started"))

    with pytest.raises(SystemExit, match="BRPROXY_INTERNAL_TOKEN is not set"):
        entry.main()
