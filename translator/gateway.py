"""What every endpoint of the translator works with: Bedrock, the meter, the catalogue."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from core.catalogue import Catalogue, ResolvedModel
from core.catalogue_store import CatalogueFollower
from core.quota import spends_money
from core.settings import Settings
from core.usage import UsageEvent
from translator.asgi import Reply, Request
from translator.bedrock_client import BedrockRuntime
from translator.bedrock_errors import BedrockError
from translator.meter_sink import MeterSink

__all__ = ["Gateway", "estimate_tokens", "session_id"]


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token) for calls Bedrock never reported."""
    return (len(text) + 3) // 4


def session_id(request: Request) -> str | None:
    """BRClient and OpenAI clients send `Session-Id`; Claude Code `x-claude-code-session-id`."""
    value = request.header(b"session-id") or request.header(b"x-claude-code-session-id")
    return value[:200] if value else None


@dataclass(slots=True)
class Gateway:
    """The translator's long-lived parts, shared by all requests of one process."""

    settings: Settings
    models: CatalogueFollower
    """The catalogue as admins edited it, and per-key allowlists (kept current)."""
    bedrock: BedrockRuntime
    meter: MeterSink

    @property
    def catalogue(self) -> Catalogue:
        return self.models.catalogue

    def resolve(self, path: str, model: str, key_id: int, kind: str = "chat") -> ResolvedModel:
        """The Bedrock model for a client's model name, checked against the caller's allowlist.

        Unknown and disabled models are a 404, a model the key may not use a 403, a model of
        the wrong kind (an embedding model on chat) a 400, each in the client's error shape.
        """
        state = self.models.state
        resolved = state.catalogue.resolve(model, self.bedrock.region)
        if resolved is None or not resolved.entry.enabled:
            raise Reply.error(
                path,
                404,
                f"The model '{model}' does not exist or is not offered by this gateway.",
                code="model_not_found",
                param="model",
            )
        if not state.allows(key_id, resolved.entry):
            raise Reply.error(
                path,
                403,
                f"This API key may not use the model '{model}'.",
                code="model_not_allowed",
                param="model",
            )
        if resolved.entry.kind != kind:
            if resolved.entry.kind == "embedding":
                what, where = "an embedding model", "/v1/embeddings"
            else:
                what, where = "a chat model", "/v1/chat/completions or /v1/messages"
            raise Reply.error(
                path,
                400,
                f"The model '{model}' is {what}; call it on {where}.",
                code="model_not_supported",
                param="model",
            )
        return resolved

    @staticmethod
    def usage_event(request: Request, model: str, resolved: ResolvedModel, **fields: Any) -> UsageEvent:
        """This request's usage event: its id is the request's (fixed at the edge), so a
        replayed event is billed once and authz can free the request's reservation."""
        assert request.key_id is not None, "call request.caller() first"
        fields.setdefault("occurred_at", time.time())
        return UsageEvent(
            event_id=request.request_id,
            key_id=request.key_id,
            model=model,
            bedrock_model_id=resolved.bedrock_id,
            client_session_id=session_id(request),
            **fields,
        )

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
