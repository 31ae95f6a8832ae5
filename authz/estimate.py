"""What authz reserves for a model call: its worst-case cost, from its whole body (pure; no I/O).

The edge sends authz the whole body of every `/v1/` call (up to the edge's limit), and authz
reads it with `core.admission`, the same reading the translator builds its Bedrock call
from: the reservation covers the output ceiling the translator will send and every byte of
the prompt, whatever order, duplicates, escapes or transfer encoding the body came in. A
body that reading refuses (not JSON, an invalid max_tokens, an unknown model) is refused
here with the error the translator would give, before any money is reserved.
"""

from __future__ import annotations

from core.admission import (
    API_KIND,
    Admission,
    BodyRefused,
    bound_cost,
    call_bound,
    paid_api,
    parse_json_object,
    unknown_model,
    wrong_kind,
)
from core.catalogue import Catalogue, highest_prices

__all__ = ["admission_for"]


def admission_for(path: str, raw: bytes, catalogue: Catalogue) -> Admission:
    """The cost to reserve for the call (raises BodyRefused for a body that cannot be served).

    Prices are the highest of the model's routes (a geographic profile's premium included),
    since the translator's region decides which route serves it.
    """
    api = paid_api(path)
    if api is None:
        raise BodyRefused(f"Unknown route POST {path}.", status=404, code="unknown_url")
    model_message = "model: Field required" if api == "anthropic.messages" else "model is required"
    parsed = parse_json_object(raw, model_message)
    model = parsed.model
    bound = call_bound(api, parsed.body, model, parsed.size)
    resolved = catalogue.resolve(model)
    if resolved is None or not resolved.entry.enabled:
        raise unknown_model(model)
    refusal = wrong_kind(model, resolved.entry, API_KIND[api])
    if refusal is not None:
        raise refusal
    cost = bound_cost(bound, resolved.entry, highest_prices(resolved.entry))
    return Admission(cost, bound.output_tokens_for(resolved.entry))
