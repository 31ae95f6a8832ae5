"""BRProxy's SigV4 signer gives botocore's signature for every request shape the translator sends."""

from __future__ import annotations

import datetime as dt

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from translator.sigv4 import SigningCredentials, SigV4Signer

NOW = dt.datetime(2026, 11, 27, 23, 59, 58)


@pytest.mark.parametrize(
    ("url", "token", "accept"),
    [
        pytest.param(
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
            None,
            "application/json",
            id="aws-default-port",
        ),
        pytest.param(
            "https://bedrock-runtime.eu-west-1.amazonaws.com:443/model/eu.amazon.nova-pro-v1%3A0/converse-stream",
            "session-token/with+odd=chars",
            "application/vnd.amazon.eventstream",
            id="explicit-default-port-and-session-token",
        ),
        pytest.param(
            "http://127.0.0.1:18872/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fx/invoke",
            None,
            "application/json",
            id="simulator-port-and-arn",
        ),
    ],
)
def test_signature_equals_botocores(
    monkeypatch: pytest.MonkeyPatch, url: str, token: str | None, accept: str
) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda remove_tzinfo=True: NOW)
    region = url.split(".")[1] if "amazonaws" in url else "us-east-1"
    body = b'{"messages": [{"role": "user", "content": [{"text": "hi"}]}]}'
    headers = {"Content-Type": "application/json", "Accept": accept}

    reference = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    botocore.auth.SigV4Auth(Credentials("AKID", "secret", token), "bedrock", region).add_auth(reference)
    ours = SigV4Signer(region).sign(url, body, headers, SigningCredentials("AKID", "secret", token), now=NOW)

    assert ours == dict(reference.headers.items())


def test_the_signing_key_is_derived_once_a_day() -> None:
    signer = SigV4Signer("us-east-1")
    credentials = SigningCredentials("AKID", "secret", None)
    url = "https://example.com/model/m/converse"
    signer.sign(url, b"{}", {}, credentials, now=NOW)
    signer.sign(url, b"{}", {}, credentials, now=NOW + dt.timedelta(seconds=1))
    assert len(signer._keys) == 1
    signer.sign(url, b"{}", {}, credentials, now=NOW + dt.timedelta(days=1))
    assert len(signer._keys) == 2
