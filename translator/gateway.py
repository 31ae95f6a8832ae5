"""What every endpoint of the translator works with: Bedrock, the meter, the catalogue."""

from __future__ import annotations

import time
from dataclasses import dataclass

from core.catalogue import Catalogue, ResolvedModel
from core.quota import spends_money
from core.settings import Settings
from core.usage import UsageEvent
from translator.asgi import Reply, Request
from translator.bedrock_client import BedrockRuntime
from translator.bedrock_errors import BedrockError
from translator.meter_sink import MeterSink

__all__ = ["Gateway", "estimate_tokens"]


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token) for calls Bedrock never reported."""
    return (len(text) + 3) // 4


@dataclass(slots=True)
class Gateway:
    """The translator's long-lived parts, shared by all requests of one process."""

    settings: Settings
    catalogue: Catalogue
    bedrock: BedrockRuntime
    meter: MeterSink

    def resolve(self, path: str, model: str) -> ResolvedModel:
        """The Bedrock model for a client's model name, or a 404 in the client's error shape."""
        resolved = self.catalogue.resolve(model, self.bedrock.region)
        if resolved is None:
            raise Reply.error(
                path,
                404,
                f"The model '{model}' does not exist or is not offered by this gateway.",
                code="model_not_found",
                param="model",
            )
        return resolved

    def submit(self, request: Request, event: UsageEvent) -> None:
        """Hand a request's usage event to the meter (once per request)."""
        self.meter.submit(event)
        request.usage_submitted = True

    def release_unbilled(self, request: Request) -> None:
        """A paid request that ended without a usage event (refused, failed before Bedrock
        billed anything) still tells the meter, so its reservation in authz is freed."""
        if request.key_id is None or request.usage_submitted:
            return
        if not spends_money(request.scope["method"], request.path):
            return
        self.submit(request, UsageEvent.release(request.request_id, request.key_id, time.time()))

    @staticmethod
    def bedrock_reply(path: str, error: BedrockError) -> Reply:
        """A failed Bedrock call as an error response in the client's shape."""
        headers = []
        if error.retry_after is not None:
            headers.append((b"retry-after", str(error.retry_after).encode()))
        code = error.name[:1].lower() + error.name[1:] if error.name else None
        return Reply.error(path, error.status, error.client_message, code=code, headers=headers)
