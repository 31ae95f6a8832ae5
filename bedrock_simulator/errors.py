"""Bedrock Runtime error names, their HTTP statuses and the messages AWS sends with them.

Statuses come from the Bedrock Runtime service model (botocore's ``bedrock-runtime`` data,
``error.httpStatusCode`` of each exception shape). The front-door errors (authentication,
unknown operation) are not in the service model: they are raised by AWS's request layer before
Bedrock sees the call, so their ``x-amzn-ErrorType`` carries a different namespace.
"""

from __future__ import annotations

__all__ = [
    "BEDROCK_ERROR_STATUS",
    "DEFAULT_MESSAGES",
    "FRONT_DOOR_ERROR_STATUS",
    "STREAM_EXCEPTIONS",
    "SimulatedError",
    "error_status",
    "error_type_header",
]

BEDROCK_ERROR_STATUS: dict[str, int] = {
    "AccessDeniedException": 403,
    "ConflictException": 400,
    "InternalServerException": 500,
    "ModelErrorException": 424,
    "ModelNotReadyException": 429,
    "ModelTimeoutException": 408,
    "ResourceNotFoundException": 404,
    "ServiceQuotaExceededException": 400,
    "ServiceUnavailableException": 503,
    "ThrottlingException": 429,
    "ValidationException": 400,
}

FRONT_DOOR_ERROR_STATUS: dict[str, int] = {
    "IncompleteSignatureException": 403,
    "InvalidSignatureException": 403,
    "MissingAuthenticationTokenException": 403,
    "UnknownOperationException": 404,
    "UnrecognizedClientException": 403,
}

# Members of ConverseStreamOutput that are exceptions: the only names botocore maps to an
# EventStreamError when they arrive mid-stream (anything else is silently dropped by it).
STREAM_EXCEPTIONS: frozenset[str] = frozenset(
    {
        "internalServerException",
        "modelStreamErrorException",
        "serviceUnavailableException",
        "throttlingException",
        "validationException",
    }
)

# Texts Bedrock is seen to send, so clients that log or match them behave as against AWS.
DEFAULT_MESSAGES: dict[str, str] = {
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "ConflictException": "The request could not be completed due to a conflict.",
    "InternalServerException": "The server encountered an internal error while processing the request.",
    "ModelErrorException": "The model returned an error while processing the request.",
    "ModelNotReadyException": "The model is not ready to serve inference requests. Try again later.",
    "ModelTimeoutException": "Model has timed out in processing the request. Try your request again.",
    "ResourceNotFoundException": "The requested resource could not be found.",
    "ServiceQuotaExceededException": "Your request exceeds the service quota for your account.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ValidationException": "The input fails to satisfy the constraints specified by Amazon Bedrock.",
    "internalServerException": "The server encountered an internal error while processing the request.",
    "modelStreamErrorException": "The model encountered an error while streaming the response.",
    "serviceUnavailableException": "Bedrock is unable to process your request.",
    "throttlingException": "Too many requests, please wait before trying again.",
    "validationException": "The input fails to satisfy the constraints specified by Amazon Bedrock.",
}

_BEDROCK_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"
_FRONT_DOOR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.coral.service/"


def error_status(name: str) -> int:
    """HTTP status for an error name; unknown names are server faults, as AWS would report them."""
    status = BEDROCK_ERROR_STATUS.get(name)
    if status is None:
        status = FRONT_DOOR_ERROR_STATUS.get(name, 500)
    return status


def error_type_header(name: str) -> str:
    """Value of ``x-amzn-ErrorType``; botocore keeps only the part before the first ':'."""
    namespace = _FRONT_DOOR_NAMESPACE if name in FRONT_DOOR_ERROR_STATUS else _BEDROCK_NAMESPACE
    return f"{name}:{namespace}"


class SimulatedError(Exception):
    """An error the simulator answers with, in Bedrock's shape (status, error type, message)."""

    def __init__(self, name: str, message: str | None = None) -> None:
        self.name = name
        self.message = message if message is not None else DEFAULT_MESSAGES.get(name, name)
        super().__init__(f"{name}: {self.message}")

    @property
    def status(self) -> int:
        return error_status(self.name)
