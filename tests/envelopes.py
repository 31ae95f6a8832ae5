"""The envelope /admin and /user answer in ({"success": ..., "data": ...}), checked the same way
by the admin API's own tests and the end-to-end ones."""

from __future__ import annotations

from typing import Any

import httpx


def ok_data(response: httpx.Response, status: int = 200) -> Any:
    """The `data` of a success envelope, after checking status and shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True, body
    return body["data"]


def error_message(response: httpx.Response, status: int) -> str:
    """The message of an error envelope, after checking status and shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False, body
    assert isinstance(body["data"], str)
    return body["data"]
