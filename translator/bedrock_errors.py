"""Bedrock's errors → the status and error type each client API expects (pure)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BedrockError", "status_for"]

# Bedrock Runtime exception name → HTTP status BRProxy answers with.
_STATUS = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ThrottlingException": 429,
    "ServiceQuotaExceededException": 429,
    "ModelNotReadyException": 503,
    "ServiceUnavailableException": 503,
    "ModelTimeoutException": 504,
    "ModelErrorException": 502,
    "InternalServerException": 502,
    "ModelStreamErrorException": 502,
    "UnrecognizedClientException": 502,
    "InvalidSignatureException": 502,
    "ExpiredTokenException": 502,
}


def status_for(exception_name: str) -> int:
    # Event-stream exception frames name them in lowerCamelCase (throttlingException).
    name = exception_name[:1].upper() + exception_name[1:]
    return _STATUS.get(name, 502)


@dataclass(slots=True)
class BedrockError(Exception):
    """A failed Bedrock call: its exception name, message and the status to answer with."""

    name: str
    message: str
    upstream_status: int | None = None

    @property
    def status(self) -> int:
        return status_for(self.name)

    @property
    def client_message(self) -> str:
        """What the client is told; credential problems are the gateway's, not the caller's."""
        if self.name in ("UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException"):
            return "The gateway's AWS credentials were refused by Bedrock."
        if self.name in ("ValidationException", "ResourceNotFoundException", "AccessDeniedException"):
            return self.message or self.name
        return f"Bedrock: {self.name}: {self.message}" if self.message else f"Bedrock: {self.name}"

    @property
    def retry_after(self) -> int | None:
        return 1 if self.status == 429 else None

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"
