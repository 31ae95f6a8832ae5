"""Error bodies: one shape per client, chosen by the request path."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import ErrorShape, anthropic_error, envelope_error, error_body, openai_error, shape_for_path


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        pytest.param("/v1/chat/completions", ErrorShape.OPENAI, id="openai-chat"),
        pytest.param("/v1/models", ErrorShape.OPENAI, id="openai-models"),
        pytest.param("/v1/embeddings", ErrorShape.OPENAI, id="openai-embeddings"),
        pytest.param("/v1/messages", ErrorShape.ANTHROPIC, id="anthropic-messages"),
        pytest.param("/v1/messages/count_tokens", ErrorShape.ANTHROPIC, id="anthropic-count-tokens"),
        pytest.param("/admin", ErrorShape.ENVELOPE, id="admin-root"),
        pytest.param("/admin/api-key/list", ErrorShape.ENVELOPE, id="admin"),
        pytest.param("/user/api-key/mine", ErrorShape.ENVELOPE, id="user"),
        pytest.param("/health", ErrorShape.OPENAI, id="health-default"),
        pytest.param("/", ErrorShape.OPENAI, id="root-default"),
        pytest.param("/v2/messages", ErrorShape.OPENAI, id="not-v1-messages"),
    ],
)
def test_shape_for_path(path: str, shape: ErrorShape) -> None:
    assert shape_for_path(path) is shape


def oa(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def an(message: str, type_: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


def env(message: str) -> dict[str, Any]:
    return {"success": False, "data": message}


@pytest.mark.parametrize(
    ("path", "status", "kwargs", "body"),
    [
        pytest.param(
            "/v1/chat/completions",
            401,
            {},
            oa("m", "invalid_request_error", "invalid_api_key"),
            id="openai-401",
        ),
        pytest.param(
            "/v1/chat/completions",
            400,
            {"param": "messages"},
            oa("m", "invalid_request_error", None, "messages"),
            id="openai-400-param",
        ),
        pytest.param(
            "/v1/chat/completions", 403, {}, oa("m", "permission_error", "permission_denied"), id="openai-403"
        ),
        pytest.param(
            "/v1/models",
            404,
            {"code": "model_not_found"},
            oa("m", "invalid_request_error", "model_not_found"),
            id="openai-404-code-override",
        ),
        pytest.param(
            "/v1/chat/completions",
            429,
            {"code": "insufficient_quota"},
            oa("m", "rate_limit_error", "insufficient_quota"),
            id="openai-429-quota",
        ),
        pytest.param(
            "/v1/chat/completions",
            429,
            {},
            oa("m", "rate_limit_error", "rate_limit_exceeded"),
            id="openai-429",
        ),
        pytest.param("/v1/chat/completions", 500, {}, oa("m", "server_error", None), id="openai-500"),
        pytest.param(
            "/v1/chat/completions", 502, {}, oa("m", "server_error", "bad_gateway"), id="openai-502"
        ),
        pytest.param("/health", 503, {}, oa("m", "server_error", "service_unavailable"), id="openai-503"),
        pytest.param("/v1/chat/completions", 504, {}, oa("m", "timeout_error", "timeout"), id="openai-504"),
        pytest.param(
            "/v1/chat/completions", 418, {}, oa("m", "invalid_request_error", None), id="openai-unlisted-4xx"
        ),
        pytest.param(
            "/v1/chat/completions", 599, {}, oa("m", "server_error", None), id="openai-unlisted-5xx"
        ),
        pytest.param(
            "/v1/chat/completions",
            400,
            {"type": "custom_type", "code": "c"},
            oa("m", "custom_type", "c"),
            id="openai-type-override",
        ),
        pytest.param(
            "/v1/messages",
            401,
            {"code": "invalid_api_key"},
            an("m", "authentication_error"),
            id="anthropic-401-ignores-code",
        ),
        pytest.param("/v1/messages", 402, {}, an("m", "billing_error"), id="anthropic-402"),
        pytest.param("/v1/messages", 403, {}, an("m", "permission_error"), id="anthropic-403"),
        pytest.param("/v1/messages/count_tokens", 404, {}, an("m", "not_found_error"), id="anthropic-404"),
        pytest.param("/v1/messages", 413, {}, an("m", "request_too_large"), id="anthropic-413"),
        pytest.param(
            "/v1/messages",
            429,
            {"code": "insufficient_quota"},
            an("m", "rate_limit_error"),
            id="anthropic-429",
        ),
        pytest.param("/v1/messages", 500, {}, an("m", "api_error"), id="anthropic-500"),
        pytest.param("/v1/messages", 503, {}, an("m", "overloaded_error"), id="anthropic-503"),
        pytest.param("/v1/messages", 504, {}, an("m", "timeout_error"), id="anthropic-504"),
        pytest.param("/v1/messages", 529, {}, an("m", "overloaded_error"), id="anthropic-529"),
        pytest.param("/v1/messages", 422, {}, an("m", "invalid_request_error"), id="anthropic-unlisted-4xx"),
        pytest.param("/v1/messages", 501, {}, an("m", "api_error"), id="anthropic-unlisted-5xx"),
        pytest.param("/admin/api-key/list", 403, {"code": "x", "param": "y"}, env("m"), id="envelope-admin"),
        pytest.param("/user/thread/list", 401, {}, env("m"), id="envelope-user"),
        pytest.param("/admin", 500, {}, env("m"), id="envelope-admin-root"),
    ],
)
def test_error_body(path: str, status: int, kwargs: dict[str, Any], body: dict[str, Any]) -> None:
    assert error_body(path, status, "m", **kwargs) == body


def test_builders_directly() -> None:
    assert openai_error(401, "x") == oa("x", "invalid_request_error", "invalid_api_key")
    assert anthropic_error(429, "x", type="overloaded_error") == an("x", "overloaded_error")
    assert envelope_error("x") == {"success": False, "data": "x"}
