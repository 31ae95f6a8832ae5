"""Error bodies in the shape each client expects, chosen by the request path.

- `/v1/messages*` (Anthropic Messages): `{"type":"error","error":{"type","message"}}`
- other `/v1/*` (OpenAI): `{"error":{"message","type","param","code"}}`
- `/admin/*`, `/user/*` (BRProxy manager): `{"success": false, "data": "<message>"}`

Every component that refuses a request (authz, translator, admin API, Envoy's own local
replies) builds its body here, so a client sees one shape whichever component refused.
"""

from __future__ import annotations

import enum
from typing import Any

__all__ = [
    "ErrorShape",
    "anthropic_error",
    "envelope_error",
    "error_body",
    "openai_error",
    "shape_for_path",
]


class ErrorShape(enum.Enum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    ENVELOPE = "envelope"


def shape_for_path(path: str) -> ErrorShape:
    if path.startswith("/v1/messages"):
        return ErrorShape.ANTHROPIC
    if path.startswith(("/admin", "/user")):
        return ErrorShape.ENVELOPE
    return ErrorShape.OPENAI


_OPENAI_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    408: ("timeout_error", "timeout"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("timeout_error", "timeout"),
}

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def openai_error(
    status: int,
    message: str,
    *,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    default_type, default_code = _OPENAI_TYPES.get(
        status, ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    )
    return {
        "error": {
            "message": message,
            "type": type or default_type,
            "param": param,
            "code": code or default_code,
        }
    }


def anthropic_error(status: int, message: str, *, type: str | None = None) -> dict[str, Any]:
    default = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": type or default, "message": message}}


def envelope_error(message: str) -> dict[str, Any]:
    return {"success": False, "data": message}


def error_body(
    path: str,
    status: int,
    message: str,
    *,
    code: str | None = None,
    type: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """The error body for `path`, in that client's shape."""
    shape = shape_for_path(path)
    if shape is ErrorShape.ENVELOPE:
        return envelope_error(message)
    if shape is ErrorShape.ANTHROPIC:
        return anthropic_error(status, message)
    return openai_error(status, message, type=type, code=code, param=param)
