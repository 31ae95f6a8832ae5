"""The app as a whole (admin_api/app.py, envelope.py): exports, error mapping, JSON encoding."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from admin_api_support import FROM_THE_EDGE, as_admin, error_message
from fastapi import Body

import admin_api
from admin_api import create_app
from admin_api.app import validation_message
from admin_api.envelope import dumps, error
from core.settings import Settings


def test_exports() -> None:
    assert admin_api.__all__ == ["create_app"]


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        pytest.param("GET", "/admin/no-such-thing", 404, "no such route", id="unknown-admin-route"),
        pytest.param("GET", "/user/no-such-thing", 404, "no such route", id="unknown-user-route"),
        pytest.param("GET", "/", 404, "no such route", id="root"),
        pytest.param("GET", "/admin/api-key/list/", 404, "no such route", id="trailing-slash-no-redirect"),
        pytest.param("GET", "/docs", 404, "no such route", id="no-docs"),
        pytest.param("GET", "/openapi.json", 404, "no such route", id="no-openapi"),
        pytest.param("DELETE", "/admin/api-key/list", 405, "method not allowed", id="wrong-method"),
        pytest.param("GET", "/admin/api-key/apply", 405, "method not allowed", id="get-on-post-route"),
    ],
)
async def test_unknown_routes_and_methods_answer_in_the_envelope(
    client: httpx.AsyncClient, method: str, path: str, status: int, message: str
) -> None:
    response = await client.request(method, path, headers=as_admin())

    assert error_message(response, status) == message
    if status == 405:
        assert "allow" in response.headers


async def test_an_unexpected_exception_is_a_logged_500_without_the_body(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)

    async def explode(payload: dict[str, Any] = Body()) -> None:  # noqa: B008 (FastAPI's idiom)
        raise RuntimeError("boom")

    app.add_api_route("/admin/explode", explode, methods=["POST"])
    secret = "br-" + "S" * 40
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://admin-api") as client:
        with caplog.at_level(logging.ERROR, logger="admin_api"):
            response = await client.post(
                "/admin/explode", json={"api_key": secret}, headers=as_admin() | FROM_THE_EDGE
            )

    assert error_message(response, 500) == "internal error"
    assert [r.getMessage() for r in caplog.records] == ["internal error on POST /admin/explode"]
    assert caplog.records[0].exc_info is not None
    assert secret not in caplog.text


def test_json_encoding() -> None:
    value = {
        "money": Decimal("20.0000000000"),
        "tiny": Decimal("0.000001"),
        "exact": Decimal("5.500001000001100040000000000005"),
        "exponent": Decimal("5E-30"),
        "large": Decimal("1E+14"),
        "at": dt.datetime(2026, 11, 26, 23, 38, 1, 500, tzinfo=dt.UTC),
        "month": dt.date(2026, 11, 1),
        "event": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    }

    # Money keeps every stored digit, in positional notation (never through a float).
    encoded = dumps(value)
    assert encoded == (
        b'{"money":20.0000000000,"tiny":0.000001,"exact":5.500001000001100040000000000005,'
        b'"exponent":0.000000000000000000000000000005,"large":100000000000000,'
        b'"at":"2026-11-26T23:38:01.000500+00:00","month":"2026-11-01",'
        b'"event":"12345678-1234-5678-1234-567812345678"}'
    )
    assert json.loads(encoded, parse_float=Decimal)["exact"] == Decimal("5.500001000001100040000000000005")
    with pytest.raises(TypeError):
        dumps({"unknown": object()})
    for not_a_number in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(TypeError):
            dumps({"money": Decimal(not_a_number)})


def test_an_error_envelope_is_never_a_success_status() -> None:
    assert error(404, "gone").status_code == 404
    with pytest.raises(ValueError, match="error status"):
        error(200, "fine")


@pytest.mark.parametrize(
    ("errors", "message"),
    [
        pytest.param(
            [{"type": "missing", "loc": ("body", "name"), "msg": "Field required"}],
            "name: Field required",
            id="body-field",
        ),
        pytest.param(
            [{"type": "greater_than_equal", "loc": ("query", "limit"), "msg": "too small"}],
            "limit: too small",
            id="query-field",
        ),
        pytest.param(
            [{"type": "json_invalid", "loc": ("body", 9), "msg": "JSON decode error"}],
            "body: malformed JSON",
            id="malformed-json",
        ),
        pytest.param(
            [{"type": "missing", "loc": ("body",), "msg": "Field required"}],
            "body: Field required",
            id="no-body",
        ),
        pytest.param(
            [
                {"type": "x", "loc": ("body", "a", 0, "b"), "msg": "bad"},
                {"type": "x", "loc": ("body", "a", 0, "b"), "msg": "bad"},
                {"type": "y", "loc": ("body", "c"), "msg": "worse"},
            ],
            "a.0.b: bad; c: worse",
            id="nested-and-deduplicated",
        ),
        pytest.param([], "invalid request", id="nothing-said"),
    ],
)
def test_validation_message(errors: list[dict[str, Any]], message: str) -> None:
    assert validation_message(errors) == message
