"""The manager's response shape, `{"success": bool, "data": …}`, and its JSON encoding.

Money leaves the database as `Decimal` and stays exact through every computation, and
leaves here as a JSON number written from the Decimal's own digits, never through a float:
`5.500001000001100040000000000005` stays exactly that (a float would say 5.5000010000011).
A number, because the manager does arithmetic on it (it beats the original's
`"20.0000000000"` strings). Timestamps are ISO 8601.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson
from starlette.responses import Response

from core.errors import envelope_error

__all__ = ["ApiError", "EnvelopeResponse", "dumps", "error", "ok"]


class ApiError(Exception):
    """A refusal with its HTTP status; the app turns it into an error envelope."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():  # Postgres numeric can hold NaN and ±Infinity; JSON cannot
            raise TypeError(f"cannot encode {value} as a JSON number")
        # Positional notation ("0.000000000000000000000000000005", not "5E-30"): every
        # digit as stored, in a form any JSON reader takes.
        return orjson.Fragment(format(value, "f"))
    if isinstance(value, uuid.UUID):  # asyncpg's own UUID subclass, which orjson does not know
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(content: Any) -> bytes:
    """JSON bytes; datetimes and dates come out as ISO 8601 (orjson's native encoding)."""
    return orjson.dumps(content, default=_default)


class EnvelopeResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def ok(data: Any, status_code: int = 200) -> EnvelopeResponse:
    return EnvelopeResponse({"success": True, "data": data}, status_code=status_code)


def error(status_code: int, message: str, headers: Mapping[str, str] | None = None) -> EnvelopeResponse:
    """An error envelope; never sent with a 2xx status (the original's defect)."""
    if status_code < 400:
        raise ValueError("an error envelope needs an error status")
    return EnvelopeResponse(envelope_error(message), status_code=status_code, headers=headers)
