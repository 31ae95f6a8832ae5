"""What every admin API route accepts, checked in one place before any route code runs.

`AdminRoute` (the route class of every router here) sees each request first:

- Every text value, wherever it comes from (query parameters, names and values; path
  parameters; every string and key of a JSON body, at any depth), must be storable in
  Postgres: no NUL and no lone surrogate. Otherwise 400 naming the field, before anything
  reaches the database (it used to be an asyncpg error and a 500).
- A JSON body is parsed with its numbers exact: a number with a fraction or an exponent
  becomes a `Decimal` with the digits the client wrote (stdlib json would round it to a
  float first), and integers stay `int`. Duplicate keys are refused rather than resolved
  silently; `NaN` and `Infinity` (not JSON, but Python reads them) are left to the field
  they land in to refuse, so the message names it.
- A body is read as JSON only when it says so (`Content-Type: application/json`); FastAPI
  would otherwise hand the raw bytes to pydantic, whose parser rounds numbers to floats.

Integers are strict too (see `body_integer` and `param_integer`): `true` is not key 1.
"""

from __future__ import annotations

import email.message
import json
import re
from collections.abc import Callable, Coroutine, Iterator
from decimal import Decimal
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic_core import PydanticCustomError

from admin_api.envelope import ApiError
from core.postgres_text import unstorable_character

__all__ = [
    "AdminRoute",
    "ExactJsonRequest",
    "body_integer",
    "param_integer",
    "parse_json",
    "unstorable_field",
]

_DIGITS = re.compile(r"[0-9]{1,20}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                # Which one would win is a parser's choice; say so instead of choosing.
                raise ApiError(400, f"body: the key '{_printable(key)}' appears twice")
            seen.add(key)
    return result


def parse_json(raw: bytes) -> Any:
    """JSON with exact numbers (fractions and exponents as Decimal) and unique keys.

    Raises json.JSONDecodeError for malformed JSON, ApiError for a duplicate key.
    """
    return json.loads(raw, parse_float=Decimal, object_pairs_hook=_unique_keys)


def _strings(body: Any) -> Iterator[tuple[str, str, bool]]:
    """Every string in a JSON value: (path, text, is_key). A loop, not recursion: the body
    may nest as deep as the parser allowed."""
    pending: list[tuple[str, Any]] = [("", body)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            yield path, value, False
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                yield path, key, True
                pending.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            for index in range(len(value) - 1, -1, -1):
                pending.append((f"{path}.{index}" if path else str(index), value[index]))


def unstorable_field(body: Any) -> str | None:
    """The refusal for the first string in `body` Postgres cannot store, or None."""
    for path, text, is_key in _strings(body):
        what = unstorable_character(text)
        if what is not None:
            if is_key:
                return f"{path or 'body'}: a field name contains {what}"
            return f"{path or 'body'}: must not contain {what}"
    return None


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


class ExactJsonRequest(Request):
    """A request whose JSON body is parsed by `parse_json` (FastAPI reads it through `json()`)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


def _check_parameters(request: Request) -> None:
    for name, value in request.query_params.multi_items():
        for text in (name, value):
            what = unstorable_character(text)
            if what is not None:
                raise ApiError(400, f"{_printable(name)}: must not contain {what}")
    for name, value in request.path_params.items():
        what = unstorable_character(value) if isinstance(value, str) else None
        if what is not None:
            raise ApiError(400, f"{name}: must not contain {what}")


def _printable(text: str) -> str:
    """A client-chosen name as it may appear in a message: escaped, and short."""
    return repr(text)[1:-1][:100]


async def _parsed(request: Request) -> Any:
    try:
        return await request.json()
    except json.JSONDecodeError:
        raise ApiError(400, "body: malformed JSON") from None
    except UnicodeDecodeError:  # before ValueError: it is one
        raise ApiError(400, "body: not UTF-8 text") from None
    except RecursionError:
        raise ApiError(400, "body: nested too deeply") from None
    except ValueError:  # an integer beyond Python's digit limit for int()
        raise ApiError(400, "body: a number has too many digits") from None


class AdminRoute(APIRoute):
    """Every admin API route: parameters and body are checked (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        takes_body = self.body_field is not None

        async def checked(request: Request) -> Response:
            request = ExactJsonRequest(request.scope, request.receive)
            _check_parameters(request)
            if takes_body and await request.body():
                if not _is_json(request.headers.get("content-type")):
                    raise ApiError(415, "body: send JSON, with Content-Type: application/json")
                problem = unstorable_field(await _parsed(request))
                if problem is not None:
                    raise ApiError(400, problem)
            return await handle(request)

        return checked


def body_integer(value: Any) -> Any:
    """A JSON integer, as it is: not `true`, not `1.0`, not `"1"` (pydantic would take all three)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("integer_type", "must be an integer")
    return value


def param_integer(value: Any) -> Any:
    """A query or path integer: ASCII digits only (pydantic would take `1.0`, `+1`, ` 1`, `1_0`)."""
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise PydanticCustomError("integer_type", "must be a non-negative integer written in digits")
        return int(value)
    return body_integer(value)
