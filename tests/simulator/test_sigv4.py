"""SigV4 verification against requests signed by botocore's own SigV4Auth."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bedrock_simulator.errors import SimulatedError
from bedrock_simulator.sigv4 import SigV4Verifier, canonical_uri

ACCESS_KEY = "AKIDSIMULATOR"
SECRET = "simulator-secret"
ENDPOINT = "http://127.0.0.1:18872"
MODEL_PATH = "/model/us.anthropic.claude-3-haiku-20240307-v1%3A0/converse"
BODY = b'{"messages":[{"role":"user","content":[{"text":"hi"}]}]}'


@dataclass
class Signed:
    method: str
    raw_path: str
    query_string: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    extra: dict[str, str] = field(default_factory=dict)

    def verify(self, verifier: SigV4Verifier, **overrides: object) -> None:
        arguments: dict[str, object] = {
            "method": self.method,
            "raw_path": self.raw_path,
            "query_string": self.query_string,
            "headers": self.headers,
            "body": self.body,
        }
        arguments.update(overrides)
        verifier.verify(**arguments)  # type: ignore[arg-type]


def sign(
    *,
    path: str = MODEL_PATH,
    body: bytes = BODY,
    access_key: str = ACCESS_KEY,
    secret: str = SECRET,
    token: str | None = None,
    service: str = "bedrock",
    region: str = "us-east-1",
) -> Signed:
    """Sign like boto3 does, then present the request as the simulator's ASGI server would see it."""
    url = ENDPOINT + path
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(access_key, secret, token), service, region).add_auth(request)
    parts = urlsplit(url)
    headers = [(b"host", parts.netloc.encode())]
    for name, value in request.headers.items():
        headers.append((name.lower().encode(), value.encode() if isinstance(value, str) else value))
    return Signed("POST", parts.path, parts.query, headers, body)


def strict() -> SigV4Verifier:
    return SigV4Verifier(access_key_id=ACCESS_KEY, secret_access_key=SECRET)


@pytest.mark.parametrize(
    "signed",
    [
        pytest.param(sign(), id="model-id-with-colon"),
        pytest.param(
            sign(path="/model/us.anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"), id="stream"
        ),
        pytest.param(
            sign(
                path="/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fx/converse"
            ),
            id="arn-with-encoded-slash",
        ),
        pytest.param(sign(token="session-token"), id="session-token"),
        pytest.param(sign(body=b""), id="empty-body"),
        pytest.param(sign(path=MODEL_PATH + "?b=2&a=1&c=%7E"), id="query-string"),
    ],
)
def test_botocore_signatures_verify(signed: Signed) -> None:
    auth = strict()
    signed.verify(auth)
    # Also without the access key restriction (secret only).
    signed.verify(SigV4Verifier(secret_access_key=SECRET))


def test_canonical_uri_double_encodes_like_botocore() -> None:
    path = "/model/us.anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    assert canonical_uri(path) == "/model/us.anthropic.claude-3-haiku-20240307-v1%253A0/converse"
    botocore_signer = SigV4Auth(Credentials("a", "b"), "bedrock", "us-east-1")
    for candidate in (path, "/a/./b/../c//d/", "/model/x%2Fy/converse", "/"):
        assert canonical_uri(candidate) == botocore_signer._normalize_url_path(candidate)


FAILURES = [
    pytest.param(lambda: (sign(), {"body": BODY + b" "}), "InvalidSignatureException", id="tampered-body"),
    pytest.param(
        lambda: (sign(), {"raw_path": MODEL_PATH.replace("haiku", "sonnet")}),
        "InvalidSignatureException",
        id="tampered-path",
    ),
    pytest.param(lambda: (sign(), {"method": "PUT"}), "InvalidSignatureException", id="tampered-method"),
    pytest.param(lambda: (sign(secret="wrong"), {}), "InvalidSignatureException", id="wrong-secret"),
    pytest.param(lambda: (sign(access_key="AKIDOTHER"), {}), "UnrecognizedClientException", id="unknown-key"),
    pytest.param(lambda: (sign(service="s3"), {}), "InvalidSignatureException", id="wrong-service"),
    pytest.param(
        lambda: (sign(), {"headers": [h for h in sign().headers if h[0] != b"authorization"]}),
        "MissingAuthenticationTokenException",
        id="missing-header",
    ),
    pytest.param(
        lambda: (sign(), {"headers": [(b"authorization", b"Bearer abc"), (b"host", b"h")]}),
        "IncompleteSignatureException",
        id="wrong-scheme",
    ),
    pytest.param(
        lambda: (
            sign(),
            {"headers": [(b"authorization", b"AWS4-HMAC-SHA256 Credential=AK/2024/us/bedrock/aws4_request")]},
        ),
        "IncompleteSignatureException",
        id="missing-parameters",
    ),
    pytest.param(
        lambda: (sign(), {"headers": [h for h in sign().headers if h[0] != b"x-amz-date"]}),
        "IncompleteSignatureException",
        id="missing-date",
    ),
    pytest.param(lambda: (sign(), {"now": time.time() + 3600}), "InvalidSignatureException", id="expired"),
]


@pytest.mark.parametrize(("make", "expected"), FAILURES)
def test_bad_requests_are_refused(make: object, expected: str) -> None:
    signed, overrides = make()  # type: ignore[operator]
    with pytest.raises(SimulatedError) as caught:
        signed.verify(strict(), **overrides)
    assert caught.value.name == expected
    assert caught.value.status == 403


def test_without_secret_only_the_form_is_checked() -> None:
    lenient = SigV4Verifier()
    sign(secret="anything").verify(lenient)
    sign(access_key="WHOEVER").verify(lenient)
    with pytest.raises(SimulatedError) as caught:
        sign().verify(lenient, headers=[(b"host", b"h")])
    assert caught.value.name == "MissingAuthenticationTokenException"
    with pytest.raises(SimulatedError) as caught:
        sign(service="lambda").verify(lenient)
    assert caught.value.name == "InvalidSignatureException"


def test_region_restriction() -> None:
    verifier = SigV4Verifier(secret_access_key=SECRET, region="eu-west-1")
    sign(region="eu-west-1").verify(verifier)
    with pytest.raises(SimulatedError) as caught:
        sign(region="us-east-1").verify(verifier)
    assert caught.value.name == "InvalidSignatureException"


def test_declared_payload_hash_must_match_body() -> None:
    signed = sign()
    headers = [*signed.headers, (b"x-amz-content-sha256", b"0" * 64)]
    with pytest.raises(SimulatedError) as caught:
        signed.verify(strict(), headers=headers)
    assert caught.value.name == "InvalidSignatureException"
