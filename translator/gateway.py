"""What every endpoint of the translator works with: Bedrock, the meter, the catalogue."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from core.admission import (
    OVERHEAD_TOKENS,
    Admission,
    BodyRefused,
    bound_cost,
    call_bound,
    unknown_model,
    wrong_kind,
)
from core.catalogue import Catalogue, ResolvedModel
from core.catalogue_store import CatalogueFollower
from core.internal_headers import ADMITTED
from core.quota import spends_money
from core.settings import Settings
from core.usage import UsageEvent
from translator.asgi import Reply, Request
from translator.bedrock_client import BedrockRuntime
from translator.bedrock_errors import BedrockError
from translator.converse_helpers import TokenUsage
from translator.meter_sink import MeterSink

__all__ = ["Gateway", "estimate_output", "estimate_tokens", "session_id"]

log = logging.getLogger("translator")


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token) for calls Bedrock never reported."""
    return (len(text) + 3) // 4


def estimate_output(request: Request, text: str) -> int:
    """Our estimate of a call's output tokens when Bedrock never reported them: never above the
    output ceiling it was made with (Bedrock cannot exceed it, so neither may the bill)."""
    estimate = estimate_tokens(text)
    ceiling = request.output_ceiling
    return estimate if ceiling is None else min(estimate, ceiling)


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
            raise self._refusal(path, unknown_model(model))
        if not state.allows(key_id, resolved.entry):
            raise Reply.error(
                path,
                403,
                f"This API key may not use the model '{model[:100]}'.",
                code="model_not_allowed",
                param="model",
            )
        wrong = wrong_kind(model, resolved.entry, kind)
        if wrong is not None:
            raise self._refusal(path, wrong)
        return resolved

    @staticmethod
    def _refusal(path: str, refusal: BodyRefused) -> Reply:
        return Reply.error(path, refusal.status, refusal.message, code=refusal.code, param=refusal.param)

    @staticmethod
    def check_admitted(
        request: Request,
        api: str,
        body: dict[str, Any],
        model: str,
        body_size: int,
        resolved: ResolvedModel,
        output_sent: int,
    ) -> None:
        """Refuse a call that would cost more than authz reserved for it.

        authz reserved the worst case of `core.admission`'s reading of these same bytes; the
        Bedrock call about to be made has the output ceiling `output_sent`. They agree by
        construction; this check makes a disagreement (a catalogue edited in between, a
        change to one side only) a refused call instead of money spent unreserved.
        """
        admitted = Admission.parse(request.header(ADMITTED))
        try:
            bound = call_bound(api, body, model, body_size)
        except BodyRefused as refusal:
            raise Reply.error(request.path, refusal.status, refusal.message, param=refusal.param) from None
        cost = bound_cost(bound, resolved.entry, resolved.prices)
        if admitted is None or output_sent > admitted.output_tokens or cost > admitted.cost:
            log.error(
                "refused a call beyond its admission (request %s): output %d, cost %s; admitted %s",
                request.request_id, output_sent, cost, admitted,
            )  # fmt: skip
            raise Reply.error(
                request.path,
                503,
                "This call was admitted for less than it may cost (the model's prices may have just "
                "changed); try again.",
            )
        request.output_ceiling = output_sent
        # A quarter of what bounds the prompt (images at their bound, not their base64).
        request.input_estimate = max(bound.input_tokens_for(resolved.entry) - OVERHEAD_TOKENS, 0) // 4

    @staticmethod
    def usage_event(request: Request, model: str, resolved: ResolvedModel, **fields: Any) -> UsageEvent:
        """This request's usage event: its id is the request's (fixed at the edge), so a
        replayed event is billed once and authz can free the request's reservation; its
        prices are the ones the call is served at, so the meter bills exactly those."""
        assert request.key_id is not None, "call request.caller() first"
        fields.setdefault("occurred_at", time.time())
        event = UsageEvent(
            event_id=request.request_id,
            key_id=request.key_id,
            model=model,
            bedrock_model_id=resolved.bedrock_id,
            client_session_id=session_id(request),
            **fields,
        )
        # Priced once: at the prices `check_admitted` found within what authz reserved.
        return event.with_prices(resolved.prices)

    def track(self, request: Request) -> None:
        """Journal a paid call from its arrival (`inflight_journal.py`): if this process dies
        before the call ends, a successor frees its reservation, or bills what it sent."""
        if spends_money(request.scope["method"], request.path):
            self.meter.journal.begin(request.request_id, request.caller())

    def journal_call(self, request: Request, event: UsageEvent) -> None:
        """Journal what the Bedrock call is, once it is set (before it is made)."""
        self.meter.journal.model(event, request.input_estimate, request.output_ceiling or 0)

    def journal_sent(self, request: Request, generated: list[str], usage: TokenUsage) -> None:
        """Before a stream's client is sent more: journal the new generated text and any new
        counts from Bedrock (one write), so the journal never holds less than was sent."""
        parts = len(generated)
        counts = (usage.input, usage.output, usage.cache_read, usage.cache_write)
        if parts == request.journaled_parts and counts == request.journaled_counts:
            return
        text = "".join(generated[request.journaled_parts :])
        named = dict(zip(("input", "output", "cache_read", "cache_write"), counts, strict=True))
        changed = counts != request.journaled_counts and any(counts)
        self.meter.journal.sent(request.request_id, text, named if changed else None)
        request.journaled_parts, request.journaled_counts = parts, counts

    def submit(self, request: Request, event: UsageEvent) -> None:
        """Hand a request's usage event to the meter (once per request); the call is then no
        longer in flight."""
        self.meter.submit(event)
        self.meter.journal.end(event.event_id)
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
