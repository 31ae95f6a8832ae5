"""Verification of AWS Signature Version 4 ``Authorization`` headers for service ``bedrock``.

Header shape::

    Authorization: AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/bedrock/aws4_request,
                   SignedHeaders=host;x-amz-date, Signature=<64 hex>
    X-Amz-Date: 20240101T000000Z
    X-Amz-Security-Token: ...            (optional, session credentials; accepted, not checked)

Two levels of checking:

* No secret configured: only the *form* is checked (scheme, the three parameters, a credential
  scope ending in ``bedrock/aws4_request``, an ``x-amz-date`` matching the scope's date, ``host``
  among the signed headers). Any client that signs at all gets in; nothing is proven.
* Secret configured: the signature is recomputed exactly as AWS does for non-S3 services and
  compared in constant time. The canonical URI is the request's raw (already percent-encoded)
  path, dot segments and empty segments removed, then percent-encoded *once more* (``%3A`` becomes
  ``%253A``): the double encoding botocore's ``SigV4Auth._normalize_url_path`` applies for every
  service but S3, which is what AWS expects.

Errors are raised as ``SimulatedError`` with the names AWS's front door uses:
``MissingAuthenticationTokenException`` (no header), ``IncompleteSignatureException`` (header
present but malformed), ``UnrecognizedClientException`` (unknown access key) and
``InvalidSignatureException`` (wrong scope, date or signature).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from calendar import timegm
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from time import gmtime, strftime, time
from urllib.parse import quote

from .errors import SimulatedError

__all__ = [
    "SERVICE",
    "ParsedAuthorization",
    "SigV4Verifier",
    "canonical_query_string",
    "canonical_uri",
    "parse_authorization",
]

SERVICE = "bedrock"
_ALGORITHM = "AWS4-HMAC-SHA256"
_UNSIGNED_PAYLOADS = frozenset({"UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"})
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_PARAM_RE = re.compile(r"\s*(Credential|SignedHeaders|Signature)\s*=\s*([^,\s]*)\s*")
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")
_AMZ_DATE_RE = re.compile(r"\d{8}T\d{6}Z")
_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)
# Derived signing keys depend only on (secret, date, region); caching them saves four HMACs per
# request. The cap keeps a long-running simulator from growing without bound.
_SIGNING_KEY_CACHE_MAX = 64


@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def credential_scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{self.terminator}"


def parse_authorization(value: str) -> ParsedAuthorization:
    """Split a SigV4 ``Authorization`` value; malformed input raises IncompleteSignatureException."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != _ALGORITHM:
        raise SimulatedError(
            "IncompleteSignatureException",
            f"Authorization header requires '{_ALGORITHM}' as its algorithm. Authorization={value}",
        )
    params: dict[str, str] = {}
    for part in rest.split(","):
        match = _PARAM_RE.fullmatch(part)
        if match is None:
            raise SimulatedError(
                "IncompleteSignatureException",
                f"'{part.strip()}' not a valid key=value pair (missing equal-sign) in Authorization header: "
                f"'{value}'.",
            )
        params[match.group(1)] = match.group(2)
    missing = [name for name in ("Credential", "Signature", "SignedHeaders") if not params.get(name)]
    if missing:
        raise SimulatedError(
            "IncompleteSignatureException",
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
            + f" Authorization={value}",
        )
    scope = params["Credential"].split("/")
    if len(scope) != 5 or not all(scope):
        raise SimulatedError(
            "IncompleteSignatureException",
            f"Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, "
            f"got '{params['Credential']}'",
        )
    return ParsedAuthorization(
        access_key_id=scope[0],
        date=scope[1],
        region=scope[2],
        service=scope[3],
        terminator=scope[4],
        signed_headers=tuple(params["SignedHeaders"].split(";")),
        signature=params["Signature"],
    )


def _remove_dot_segments(path: str) -> str:
    # Same as botocore.utils.remove_dot_segments: RFC 3986 5.2.4 plus collapsing of empty segments,
    # which AWS also requires.
    if not path:
        return "/"
    output: list[str] = []
    for segment in path.split("/"):
        if not segment or segment == ".":
            continue
        if segment == "..":
            if output:
                output.pop()
        else:
            output.append(segment)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and output else ""
    return first + "/".join(output) + last


# Clients hit the same few paths (one per model and operation) over and over.
@lru_cache(maxsize=1024)
def canonical_uri(raw_path: str) -> str:
    """The canonical URI of a non-S3 request: the wire path, normalised, encoded once more."""
    return quote(_remove_dot_segments(raw_path), safe="/~")


def canonical_query_string(raw_query: str) -> str:
    """Sorted ``key=value`` pairs of the query as received.

    Like botocore for a query carried in the URL, the pairs are not re-encoded: a signer that
    percent-encodes per the SigV4 rules (unreserved characters bare, everything else escaped) puts
    exactly these bytes on the wire, so re-encoding could only introduce mismatches.
    """
    if not raw_query:
        return ""
    pairs = [item.partition("=")[::2] for item in raw_query.split("&")]
    pairs.sort()
    return "&".join(f"{key}={val}" for key, val in pairs)


def _collect_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    collected: dict[str, list[str]] = {}
    for raw_name, raw_value in headers:
        collected.setdefault(raw_name.decode("latin-1").lower(), []).append(raw_value.decode("latin-1"))
    return collected


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


class SigV4Verifier:
    """Checks requests against an optional access key / secret (see the module docstring)."""

    def __init__(
        self,
        *,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        region: str | None = None,
        max_clock_skew_s: float | None = 900.0,
        service: str = SERVICE,
    ) -> None:
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.region = region
        self.max_clock_skew_s = max_clock_skew_s
        self.service = service
        self._signing_keys: dict[tuple[str, str], bytes] = {}

    @property
    def verifies_signatures(self) -> bool:
        return self.secret_access_key is not None

    def verify(
        self,
        *,
        method: str,
        raw_path: str,
        query_string: str,
        headers: Iterable[tuple[bytes, bytes]] | Mapping[str, list[str]],
        body: bytes,
        now: float | None = None,
    ) -> ParsedAuthorization:
        """Raise ``SimulatedError`` unless the request is acceptable; return its parsed header.

        ``headers`` is either ASGI's list of ``(name, value)`` byte pairs or a mapping from
        lower-case names to every value received for that name.
        """
        header_map = headers if isinstance(headers, Mapping) else _collect_headers(headers)
        values = header_map.get("authorization")
        if not values:
            raise SimulatedError("MissingAuthenticationTokenException", "Missing Authentication Token")
        auth = parse_authorization(values[0])
        self._check_scope(auth)
        amz_date = self._check_date(auth, header_map, now)
        if "host" not in auth.signed_headers:
            raise SimulatedError(
                "InvalidSignatureException",
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
            )
        if self.access_key_id is not None and not hmac.compare_digest(
            auth.access_key_id.encode(), self.access_key_id.encode()
        ):
            raise SimulatedError(
                "UnrecognizedClientException", "The security token included in the request is invalid."
            )
        if self.secret_access_key is None:
            return auth
        if _SIGNATURE_RE.fullmatch(auth.signature) is None:
            raise SimulatedError("InvalidSignatureException", _SIGNATURE_MISMATCH)

        payload_hash = hashlib.sha256(body).hexdigest()
        declared = header_map.get("x-amz-content-sha256")
        if declared:
            # A declared hash is what gets signed; it must still describe the body that arrived,
            # else a body could be swapped under a valid signature.
            if declared[0] not in _UNSIGNED_PAYLOADS and declared[0] != payload_hash:
                raise SimulatedError(
                    "InvalidSignatureException", "The provided 'x-amz-content-sha256' header does not match."
                )
            payload_hash = declared[0]

        signed = sorted(auth.signed_headers)
        canonical_headers = "".join(
            f"{name}:{','.join(' '.join(v.split()) for v in header_map.get(name, ()))}\n" for name in signed
        )
        canonical_request = "\n".join(
            (
                method.upper(),
                canonical_uri(raw_path),
                canonical_query_string(query_string),
                canonical_headers,
                ";".join(signed),
                payload_hash,
            )
        )
        string_to_sign = "\n".join(
            (
                _ALGORITHM,
                amz_date,
                auth.credential_scope,
                hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
            )
        )
        signing_key = self._signing_key(self.secret_access_key, auth.date, auth.region)
        expected = hmac.new(signing_key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, auth.signature):
            raise SimulatedError("InvalidSignatureException", _SIGNATURE_MISMATCH)
        return auth

    def _check_scope(self, auth: ParsedAuthorization) -> None:
        if auth.terminator != "aws4_request":
            raise SimulatedError(
                "InvalidSignatureException",
                "Credential should be scoped with a valid terminator: 'aws4_request', "
                f"not '{auth.terminator}'.",
            )
        if auth.service != self.service:
            raise SimulatedError(
                "InvalidSignatureException",
                f"Credential should be scoped to correct service: '{self.service}'. ",
            )
        if self.region is not None and auth.region != self.region:
            raise SimulatedError(
                "InvalidSignatureException",
                f"Credential should be scoped to a valid region, not '{auth.region}'. ",
            )

    def _check_date(
        self, auth: ParsedAuthorization, header_map: Mapping[str, list[str]], now: float | None
    ) -> str:
        amz_dates = header_map.get("x-amz-date")
        if not amz_dates:
            raise SimulatedError(
                "IncompleteSignatureException",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            )
        amz_date = amz_dates[0]
        # Slicing a regex-checked string costs a tenth of time.strptime, on every request.
        if _AMZ_DATE_RE.fullmatch(amz_date) is None:
            raise SimulatedError(
                "IncompleteSignatureException", f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'."
            )
        signed_at = timegm(
            (
                int(amz_date[0:4]),
                int(amz_date[4:6]),
                int(amz_date[6:8]),
                int(amz_date[9:11]),
                int(amz_date[11:13]),
                int(amz_date[13:15]),
            )
        )
        if amz_date[:8] != auth.date:
            raise SimulatedError(
                "InvalidSignatureException",
                f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{auth.date}' != '{amz_date[:8]}', from '{amz_date}'.",
            )
        if self.max_clock_skew_s is not None:
            current = time() if now is None else now
            skew = self.max_clock_skew_s
            if signed_at < current - skew or signed_at > current + skew:
                reference = strftime(_AMZ_DATE_FORMAT, gmtime(current))
                raise SimulatedError(
                    "InvalidSignatureException",
                    f"Signature expired: {amz_date} is outside the allowed clock skew of {skew:g} s "
                    f"around {reference}.",
                )
        return amz_date

    def _signing_key(self, secret: str, date: str, region: str) -> bytes:
        cache_key = (date, region)
        key = self._signing_keys.get(cache_key)
        if key is None:
            key = _hmac(("AWS4" + secret).encode("utf-8"), date)
            for part in (region, self.service, "aws4_request"):
                key = _hmac(key, part)
            if len(self._signing_keys) >= _SIGNING_KEY_CACHE_MAX:
                self._signing_keys.clear()
            self._signing_keys[cache_key] = key
        return key
