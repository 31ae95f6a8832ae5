"""`GET /v1/models`: the models the calling key may use.

One list serves every client: OpenAI's shape (`object`, `id`, `created`, `owned_by`),
BRClient's `multiple` (the model takes images), and what Claude Code's gateway model
discovery and the Anthropic SDK read (`type`, `display_name`, `created_at`, `has_more`,
`first_id`, `last_id`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from core.catalogue import ModelEntry
from translator.asgi import Request, send_json
from translator.gateway import Gateway

__all__ = ["list_models", "models_body"]

_CREATED = 1_700_000_000
_CREATED_AT = dt.datetime.fromtimestamp(_CREATED, dt.UTC).isoformat().replace("+00:00", "Z")


def _model(entry: ModelEntry) -> dict[str, Any]:
    return {
        "id": entry.name,
        "object": "model",
        "created": _CREATED,
        "owned_by": entry.provider,
        "multiple": "vision" in entry.capabilities,
        "type": "model",
        "display_name": entry.name,
        "created_at": _CREATED_AT,
    }


def models_body(entries: list[ModelEntry]) -> dict[str, Any]:
    data = [_model(entry) for entry in entries]
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


async def list_models(gateway: Gateway, request: Request) -> None:
    key_id = request.caller()
    entries = [e for e in gateway.models.state.allowed_models(key_id) if e.kind == "chat"]
    await send_json(request.send, 200, models_body(entries))
