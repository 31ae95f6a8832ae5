"""Bedrock exception names → BRProxy's status, retry hint and what the client is told."""

from __future__ import annotations

import pytest

from translator.bedrock_errors import BedrockError, status_for


@pytest.mark.parametrize(
    ("name", "status"),
    [
        pytest.param("ValidationException", 400, id="validation"),
        pytest.param("AccessDeniedException", 403, id="access-denied"),
        pytest.param("ResourceNotFoundException", 404, id="not-found"),
        pytest.param("ThrottlingException", 429, id="throttling"),
        pytest.param("ServiceQuotaExceededException", 429, id="quota"),
        pytest.param("ModelNotReadyException", 503, id="not-ready"),
        pytest.param("ServiceUnavailableException", 503, id="unavailable"),
        pytest.param("ModelTimeoutException", 504, id="model-timeout"),
        pytest.param("ModelErrorException", 502, id="model-error"),
        pytest.param("InternalServerException", 502, id="internal"),
        pytest.param("ModelStreamErrorException", 502, id="stream-error"),
        pytest.param("UnrecognizedClientException", 502, id="bad-credentials-are-ours"),
        pytest.param("InvalidSignatureException", 502, id="bad-signature-is-ours"),
        pytest.param("ExpiredTokenException", 502, id="expired-token-is-ours"),
        # event-stream exception frames use lowerCamelCase
        pytest.param("throttlingException", 429, id="camel-throttling"),
        pytest.param("validationException", 400, id="camel-validation"),
        pytest.param("serviceUnavailableException", 503, id="camel-unavailable"),
        pytest.param("modelTimeoutException", 504, id="camel-timeout"),
        pytest.param("modelStreamErrorException", 502, id="camel-stream-error"),
        pytest.param("internalServerException", 502, id="camel-internal"),
        pytest.param("SomethingNewException", 502, id="unknown"),
        pytest.param("HTTP400", 502, id="http-fallback-name"),
        pytest.param("", 502, id="empty"),
    ],
)
def test_status_for(name: str, status: int) -> None:
    assert status_for(name) == status
    error = BedrockError(name, "m")
    assert error.status == status
    assert error.retry_after == (1 if status == 429 else None)


@pytest.mark.parametrize(
    ("name", "message", "client_message"),
    [
        pytest.param(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            "The gateway's AWS credentials were refused by Bedrock.",
            id="unrecognized-client-hidden",
        ),
        pytest.param(
            "InvalidSignatureException",
            "The request signature we calculated does not match AKIA123",
            "The gateway's AWS credentials were refused by Bedrock.",
            id="invalid-signature-hidden",
        ),
        pytest.param(
            "ExpiredTokenException",
            "The security token included in the request is expired",
            "The gateway's AWS credentials were refused by Bedrock.",
            id="expired-token-hidden",
        ),
        pytest.param(
            "ValidationException",
            "messages.0: field required",
            "messages.0: field required",
            id="validation-message-as-is",
        ),
        pytest.param("ValidationException", "", "ValidationException", id="validation-without-message"),
        pytest.param("ResourceNotFoundException", "Model not found", "Model not found", id="not-found-as-is"),
        pytest.param(
            "AccessDeniedException",
            "You don't have access to the model",
            "You don't have access to the model",
            id="access-denied-as-is",
        ),
        pytest.param(
            "ThrottlingException",
            "Too many requests",
            "Bedrock: ThrottlingException: Too many requests",
            id="throttling-prefixed",
        ),
        pytest.param(
            "throttlingException",
            "slow down",
            "Bedrock: throttlingException: slow down",
            id="camel-throttling-prefixed",
        ),
        pytest.param("InternalServerException", "", "Bedrock: InternalServerException", id="no-message"),
    ],
)
def test_client_message(name: str, message: str, client_message: str) -> None:
    error = BedrockError(name, message)
    assert error.client_message == client_message
    if error.status == 502 and "credentials" in client_message:
        assert message not in client_message


def test_str_and_upstream_status() -> None:
    error = BedrockError("ThrottlingException", "slow", 429)
    assert str(error) == "ThrottlingException: slow"
    assert error.upstream_status == 429
    assert BedrockError("X", "y").upstream_status is None
    assert isinstance(error, Exception)
