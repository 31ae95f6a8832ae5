"""Envoy's own replies, in the error shape of the client that made the request.

Envoy answers some requests itself: a request it cannot parse (400), headers too large
(431) or too slow (408), a model call's body over the edge's limit (413), an unknown route
(404), an upstream or authz it cannot reach (502/503/504). Left alone those are `text/plain`;
here each becomes the body core/errors.py gives that path: OpenAI's error object on `/v1/*`,
Anthropic's on `/v1/messages*`, the `{"success": false, "data": …}` envelope on `/admin` and
`/user`, with the status unchanged.

Two kinds of local reply are special:
- authz's own refusals (401, 403, 429 and the 4xx of a body it will not admit) are local
  replies too (response flag UAEX), and their bodies are already in the client's shape:
  they pass untouched. Only authz's 503 (a plain message: "BRProxy is starting…") is shaped.
- a request Envoy could not parse has no path to choose a shape by (a malformed request
  line, headers too large or too slow): its body carries every client's fields at once
  (OpenAI's and Anthropic's `error` object, and the envelope's `success` and `data`).

Envoy tries the mappers in order and uses the first whose filter matches.
"""

from __future__ import annotations

from typing import Any

from envoy_data_plane.envoy.config.accesslog.v3 import (
    AccessLogFilter,
    AndFilter,
    ComparisonFilter,
    ComparisonFilterOp,
    ExtensionFilter,
    HeaderFilter,
    OrFilter,
    ResponseFlagFilter,
    StatusCodeFilter,
)
from envoy_data_plane.envoy.config.core.v3 import RuntimeUInt32, SubstitutionFormatString
from envoy_data_plane.envoy.config.route.v3 import HeaderMatcher
from envoy_data_plane.envoy.extensions.access_loggers.filters.cel.v3 import ExpressionFilter
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    LocalReplyConfig,
    ResponseMapper,
)
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher
from envoy_data_plane.google.protobuf import Any as AnyProto
from envoy_data_plane.google.protobuf import Struct

from core.errors import anthropic_error, envelope_error, openai_error

__all__ = ["AUTHZ_UNAVAILABLE", "MAX_REQUEST_HEADERS_COUNT", "MAX_REQUEST_HEADERS_KB", "local_replies"]

MAX_REQUEST_HEADERS_KB = 60
"""The largest request header block the edge reads (Envoy's default, stated): over it, 431."""
MAX_REQUEST_HEADERS_COUNT = 100
"""The most request headers the edge reads (Envoy's default, stated): over it, 431."""
AUTHZ_UNAVAILABLE = "The authorization service is unavailable; try again in a moment."

_ENVOY_BODY = "%LOCAL_REPLY_BODY%"
_ANTHROPIC = "/v1/messages"
_ENVELOPE = ("/admin", "/user")


def _status(op: ComparisonFilterOp, value: int) -> AccessLogFilter:
    # A runtime key is required by the message; none is ever set, so the default holds.
    threshold = RuntimeUInt32(
        default_value=value, runtime_key=f"brproxy.local_reply.{op.name.lower()}_{value}"
    )
    return AccessLogFilter(
        status_code_filter=StatusCodeFilter(comparison=ComparisonFilter(op=op, value=threshold))
    )


def _status_range(low: int, high: int) -> AccessLogFilter:
    if low == high:
        return _status(ComparisonFilterOp.EQ, low)
    return _all(_status(ComparisonFilterOp.GE, low), _status(ComparisonFilterOp.LE, high))


def _all(*filters: AccessLogFilter) -> AccessLogFilter:
    return AccessLogFilter(and_filter=AndFilter(filters=list(filters)))


def _path_prefix(prefix: str) -> AccessLogFilter:
    matcher = HeaderMatcher(name=":path", string_match=StringMatcher(prefix=prefix))
    return AccessLogFilter(header_filter=HeaderFilter(header=matcher))


def _no_path() -> AccessLogFilter:
    """The request has no `:path`: Envoy gave up before it had the request's headers."""
    matcher = HeaderMatcher(name=":path", present_match=True, invert_match=True)
    return AccessLogFilter(header_filter=HeaderFilter(header=matcher))


def _from_authz() -> AccessLogFilter:
    return AccessLogFilter(response_flag_filter=ResponseFlagFilter(flags=["UAEX"]))


def _authz_unreachable() -> AccessLogFilter:
    # ext_authz marks both its refusals and its failures to get an answer UAEX; only the
    # response code details tell them apart (`ext_authz_denied`, `ext_authz_error`).
    cel = ExpressionFilter(expression='response.code_details == "ext_authz_error"')
    return AccessLogFilter(
        extension_filter=ExtensionFilter(
            name="envoy.access_loggers.extension_filters.cel", typed_config=AnyProto.pack(cel)
        )
    )


def _json(body: dict[str, Any]) -> SubstitutionFormatString:
    struct: Struct = Struct.from_dict(body)
    return SubstitutionFormatString(json_format=struct, content_type="application/json")


def _every_shape(status: int, message: str) -> dict[str, Any]:
    """One body every client can read, for a request whose path Envoy never learnt."""
    return {"type": "error", **openai_error(status, message), **envelope_error(message)}


def _shaped(
    when: AccessLogFilter, status: int, message: str, code: str | None = None
) -> list[ResponseMapper]:
    """The mappers that give one kind of reply (`when`) each client's shape, by its path.

    `status` picks the error's type (core/errors.py's tables); the reply keeps its own status.
    """
    on_envelope = AccessLogFilter(or_filter=OrFilter(filters=[_path_prefix(p) for p in _ENVELOPE]))
    return [
        ResponseMapper(
            filter=_all(when, _path_prefix(_ANTHROPIC)),
            body_format_override=_json(anthropic_error(status, message)),
        ),
        ResponseMapper(filter=_all(when, on_envelope), body_format_override=_json(envelope_error(message))),
        ResponseMapper(filter=when, body_format_override=_json(openai_error(status, message, code=code))),
    ]


def _pathless(when: AccessLogFilter, status: int, message: str) -> ResponseMapper:
    return ResponseMapper(
        filter=_all(when, _no_path()), body_format_override=_json(_every_shape(status, message))
    )


def local_replies(
    *, max_body_bytes: int, request_headers_timeout_s: float, request_timeout_s: float = 300
) -> LocalReplyConfig:
    """Every local reply of the edge in its client's error shape; authz's own refusals untouched.

    Kept short: every mapper is built again for each of the listener's filter chains
    (edge/source_limits.py), in Envoy's memory as in the rendered configuration.
    """
    headers_too_large = (
        f"The request's headers are too large (at most {MAX_REQUEST_HEADERS_KB} KiB "
        f"and {MAX_REQUEST_HEADERS_COUNT} headers)."
    )
    headers_too_slow = f"The request's headers did not arrive within {request_headers_timeout_s:g} s."
    request_too_slow = f"The request did not arrive whole within {request_timeout_s:g} s."
    # Envoy's own text (it is empty for some refusals, e.g. a path it cannot normalise) and
    # its reason code, so the message is never empty.
    refused = f"The edge refused the request: {_ENVOY_BODY} (%RESPONSE_CODE_DETAILS%)."
    return LocalReplyConfig(
        mappers=[
            # authz's own refusals: already in the client's shape, passed on as they are.
            ResponseMapper(filter=_all(_from_authz(), _status_range(400, 499))),
            *_shaped(
                _all(_from_authz(), _status_range(503, 503), _authz_unreachable()), 503, AUTHZ_UNAVAILABLE
            ),
            # Requests Envoy could not read as far as their path (the HTTP/1 codec's replies).
            _pathless(_status_range(408, 408), 408, headers_too_slow),
            _pathless(_status_range(426, 426), 426, "HTTP/1.0 is not supported: use HTTP/1.1 or HTTP/2."),
            _pathless(_status_range(431, 431), 431, headers_too_large),
            _pathless(_status_range(400, 499), 400, "Malformed HTTP request (%RESPONSE_CODE_DETAILS%)."),
            _pathless(
                _status_range(500, 599), 500, "The edge cannot handle this request (%RESPONSE_CODE_DETAILS%)."
            ),
            *_shaped(_status_range(404, 404), 404, _ENVOY_BODY, code="unknown_url"),
            *_shaped(
                _status_range(413, 413),
                413,
                f"The request body is larger than {max_body_bytes / 2**20:g} MiB.",
            ),
            *_shaped(_status_range(431, 431), 431, headers_too_large),
            *_shaped(_status_range(408, 408), 408, request_too_slow),
            *_shaped(_status_range(400, 499), 400, refused),
            *_shaped(_status_range(503, 503), 503, _ENVOY_BODY),
            *_shaped(_status_range(500, 599), 500, _ENVOY_BODY),
        ]
    )
