"""admin_api/inputs.py on its own: the route class every route uses, exact JSON, the text walk."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from fastapi.routing import APIRoute

from admin_api.inputs import AdminRoute, body_integer, param_integer, parse_json, unstorable_field
from admin_api.routes import routers
from core.postgres_text import storable_text, unstorable_character

NUL = "a\x00b"


def test_every_route_is_an_admin_route() -> None:
    routes = [route for router in routers for route in router.routes]
    assert len(routes) > 20
    assert [getattr(route, "path", route) for route in routes if not isinstance(route, AdminRoute)] == []
    assert all(isinstance(route, APIRoute) for route in routes)


def test_parse_json_keeps_the_digits_the_client_wrote() -> None:
    parsed = parse_json(b'{"a": 123456789012345.123456789, "b": 5e-30, "c": 7, "d": 1.0, "e": [0.1]}')
    assert parsed == {
        "a": Decimal("123456789012345.123456789"),
        "b": Decimal("5e-30"),
        "c": 7,
        "d": Decimal("1.0"),
        "e": [Decimal("0.1")],
    }
    assert type(parsed["c"]) is int


def test_unstorable_field_walks_keys_values_and_depth() -> None:
    assert (
        unstorable_field({"a": [{"b": "ok"}, {"c": ["fine", NUL]}]})
        == "a.1.c.1: must not contain NUL (U+0000)"
    )
    assert unstorable_field({"a": {"k\x00": 1}}) == "a: a field name contains NUL (U+0000)"
    assert unstorable_field({"k\x00": 1}) == "body: a field name contains NUL (U+0000)"
    assert unstorable_field(NUL) == "body: must not contain NUL (U+0000)"
    assert unstorable_field({"deep": [[[[["x"]]]]], "n": 1, "none": None, "d": Decimal(1)}) is None
    deep: Any = "\ud800"
    for _ in range(5000):  # deeper than Python's recursion limit: the walk is a loop
        deep = [deep]
    assert unstorable_field(deep) == ".".join(["0"] * 5000) + ": must not contain a lone surrogate (U+D800)"


@pytest.mark.parametrize("value", [True, False, 1.0, Decimal(1), "1", None, [1]])
def test_body_integer_takes_only_json_integers(value: Any) -> None:
    with pytest.raises(ValueError, match="must be an integer"):
        body_integer(value)
    assert body_integer(-3) == -3


@pytest.mark.parametrize("value", ["1.0", "+1", " 1", "1_0", "\u0661", "-1", "", "1" * 21, True])
def test_param_integer_takes_only_ascii_digits(value: Any) -> None:
    with pytest.raises(ValueError):
        param_integer(value)
    assert param_integer("0042") == 42


@pytest.mark.parametrize(
    ("text", "what", "storable"),
    [
        ("clean ascii", None, "clean ascii"),
        ("a\x00b", "NUL (U+0000)", "a\ufffdb"),
        ("é\x00", "NUL (U+0000)", "é\ufffd"),
        ("x\ud800", "a lone surrogate (U+D800)", "x\ufffd"),
        ("\udfff\x00", "a lone surrogate (U+DFFF)", "\ufffd\ufffd"),
        ("pair \U0001f600", None, "pair \U0001f600"),
        ("", None, ""),
    ],
)
def test_postgres_text(text: str, what: str | None, storable: str) -> None:
    assert unstorable_character(text) == what
    assert storable_text(text) == storable
    assert unstorable_character(storable_text(text)) is None
    storable_text(storable).encode("utf-8")  # asyncpg can send it
