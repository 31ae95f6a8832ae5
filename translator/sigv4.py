"""AWS Signature Version 4 for the translator's Bedrock calls (pure; no I/O).

botocore's `SigV4Auth` builds an `AWSRequest`, re-parses its URL and derives the signing
key anew on every call; on the request path that was a fifth of the translator's CPU. This
signer produces the same signature (the tests compare it with botocore's for every shape of
request we send) for the one request shape we make: a POST with a body, no query string,
to a non-S3 service. The derived signing key is cached per (secret, day, region, service).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
from typing import NamedTuple
from urllib.parse import quote, urlsplit

__all__ = ["SigV4Signer", "SigningCredentials", "host_header"]


class SigningCredentials(NamedTuple):
    """botocore's frozen credentials have the same three fields."""

    access_key: str
    secret_key: str
    token: str | None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


@functools.lru_cache(maxsize=1024)
def canonical_uri(path: str) -> str:
    """The canonical URI of an already percent-encoded path, as botocore makes it for non-S3
    services: encoded once more (so `%3A` becomes `%253A`), '/' and '~' kept."""
    return quote(path or "/", safe="/~")


class SigV4Signer:
    """Signs POST requests with a body for one region and service."""

    def __init__(self, region: str, service: str = "bedrock") -> None:
        self.region = region
        self.service = service
        self._keys: dict[tuple[str, str], bytes] = {}

    def _signing_key(self, secret_key: str, day: str) -> bytes:
        key = self._keys.get((secret_key, day))
        if key is None:
            if len(self._keys) > 8:  # old days and rotated secrets
                self._keys.clear()
            k_date = _hmac(("AWS4" + secret_key).encode("utf-8"), day)
            k_region = _hmac(k_date, self.region)
            k_service = _hmac(k_region, self.service)
            key = self._keys[(secret_key, day)] = _hmac(k_service, "aws4_request")
        return key

    def sign(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        credentials: SigningCredentials,
        now: dt.datetime | None = None,
    ) -> dict[str, str]:
        """`headers` plus `X-Amz-Date`, `X-Amz-Security-Token` (if any) and `Authorization`.

        Every header given is signed (as botocore signs all but user-agent and a few
        others), plus `host` from the URL; leave `User-Agent` out and add it afterwards.
        """
        moment = now or _now()
        amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
        day = amz_date[:8]
        parts = urlsplit(url)
        signed = dict(headers)
        signed["X-Amz-Date"] = amz_date
        if credentials.token:
            signed["X-Amz-Security-Token"] = credentials.token
        canonical_headers = {name.lower(): " ".join(value.split()) for name, value in signed.items()}
        canonical_headers["host"] = host_header(parts.scheme, parts.netloc)
        names = sorted(canonical_headers)
        signed_names = ";".join(names)
        canonical_request = "\n".join(
            (
                "POST",
                canonical_uri(parts.path),
                "",
                "".join(f"{name}:{canonical_headers[name]}\n" for name in names),
                signed_names,
                hashlib.sha256(body).hexdigest(),
            )
        )
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        string_to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256",
                amz_date,
                scope,
                hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
            )
        )
        signature = hmac.new(
            self._signing_key(credentials.secret_key, day), string_to_sign.encode("utf-8"), hashlib.sha256
        ).hexdigest()
        signed["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}"
        )
        return signed


def host_header(scheme: str, netloc: str) -> str:
    """The Host header value botocore signs: the port only when it is not the scheme's default.

    The request must carry exactly this value (`pooled_http` sends it), or the signature fails.
    """
    host = netloc.rsplit("@", 1)[-1]
    default = {"http": ":80", "https": ":443"}.get(scheme)
    if default and host.endswith(default):
        host = host[: -len(default)]
    return host
