"""`GET /v1/models`: the models a key may call, in OpenAI's list shape (plus BRClient's fields)."""

from __future__ import annotations

from typing import Any

from translator.asgi import Request, send_json
from translator.gateway import Gateway

__all__ = ["list_models"]


def models_body(gateway: Gateway) -> dict[str, Any]:
    data = [
        {
            "id": entry.name,
            "object": "model",
            "created": 1_700_000_000,
            "owned_by": entry.provider,
            "multiple": "vision" in entry.capabilities,
        }
        for entry in gateway.catalogue.chat_models()
    ]
    return {"object": "list", "data": data}


async def list_models(gateway: Gateway, request: Request) -> None:
    request.caller()
    await send_json(request.send, 200, models_body(gateway))
