"""BedrockRuntime sends what boto3 would send: same URL, same body, same SigV4 signature.

boto3 is the reference: a real `boto3.client("bedrock-runtime")` builds and signs the request,
and botocore's `before-send` hook captures it instead of sending it. Both sides sign with the
clock frozen (botocore.auth.get_current_datetime), so the signatures can be compared exactly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.auth
import orjson
import pytest
from aiohttp import web
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.credentials import Credentials

import translator.bedrock_client
import translator.sigv4
from bedrock_simulator.eventstream import encode_event_message, encode_exception_message
from translator.bedrock_client import BedrockRuntime, _error_from_response, proxy_for
from translator.bedrock_errors import BedrockError

ACCESS_KEY = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
FROZEN = dt.datetime(2025, 6, 1, 12, 34, 56)
MESSAGES = [{"role": "user", "content": [{"text": "Hello, Bedrock"}]}]
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<credential>[^,]+), SignedHeaders=(?P<signed>[^,]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda remove_tzinfo=True: FROZEN)
    # BRProxy's own signer reads the same instant.
    monkeypatch.setattr(translator.sigv4, "_now", lambda: FROZEN)


class _Captured(Exception):
    pass


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def boto3_request(
    endpoint: str,
    operation: str,
    model_id: str,
    *,
    token: str | None = None,
    accept: str | None = None,
) -> AWSPreparedRequest:
    """The request boto3 would send for Converse/ConverseStream (optionally also signing an Accept)."""
    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        aws_session_token=token,
        endpoint_url=endpoint,
    )
    captured: list[AWSPreparedRequest] = []

    def capture(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        captured.append(request)
        if operation == "Converse":  # a fake answer ends the call cleanly
            return AWSResponse(request.url, 200, {"content-type": "application/json"}, _Raw(b"{}"))
        raise _Captured  # ConverseStream would try to read an event stream

    def add_accept(request: Any, **_: Any) -> None:
        request.headers["Accept"] = accept

    client.meta.events.register(f"before-send.bedrock-runtime.{operation}", capture)
    if accept is not None:
        client.meta.events.register(f"before-sign.bedrock-runtime.{operation}", add_accept)
    call: Callable[..., Any] = client.converse if operation == "Converse" else client.converse_stream
    try:
        call(modelId=model_id, messages=MESSAGES)
    except _Captured:
        pass
    finally:
        client.close()
    assert len(captured) == 1
    return captured[0]


@dataclass
class _Raw:
    data: bytes

    def stream(self, **_: Any) -> Any:
        yield self.data


def parse_authorization(value: str) -> dict[str, str]:
    match = _AUTH.fullmatch(value)
    assert match, value
    return match.groupdict()


MODEL_IDS = [
    pytest.param("anthropic.claude-3-haiku-20240307-v1:0", id="bare-id"),
    pytest.param("us.anthropic.claude-sonnet-4-5-20250929-v1:0", id="profile-id"),
    pytest.param("anthropic.claude-opus-4-6-v1", id="id-without-colon"),
    pytest.param(
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0",
        id="profile-arn-with-slash",
    ),
]
OPERATIONS = [
    pytest.param("Converse", "converse", "application/json", id="converse"),
    pytest.param(
        "ConverseStream", "converse-stream", "application/vnd.amazon.eventstream", id="converse-stream"
    ),
]


@pytest.mark.parametrize(("operation", "path_operation", "accept"), OPERATIONS)
@pytest.mark.parametrize("model_id", MODEL_IDS)
@pytest.mark.parametrize(
    "token", [pytest.param(None, id="long-term"), pytest.param("FQoGZXIvYXdzEXAMPLE", id="session")]
)
def test_url_and_signature_match_boto3(
    model_id: str, operation: str, path_operation: str, accept: str, token: str | None
) -> None:
    endpoint = "http://127.0.0.1:9"
    reference = boto3_request(endpoint, operation, model_id, token=token)
    body = reference.body if isinstance(reference.body, bytes) else reference.body.encode()
    runtime = BedrockRuntime(endpoint + "/", "us-east-1", Credentials(ACCESS_KEY, SECRET, token))

    url = runtime._url(model_id, path_operation)
    assert url == reference.url
    path = url.removeprefix(endpoint)
    assert ":" not in path
    assert ("%3A" in path) == (":" in model_id)
    assert reference.method == "POST"

    ours = runtime._signed_headers(url, body, accept)
    theirs = {k: _text(v) for k, v in reference.headers.items()}
    assert ours["X-Amz-Date"] == theirs["X-Amz-Date"] == "20250601T123456Z"
    assert ours["Content-Type"] == theirs["Content-Type"] == "application/json"
    assert ours.get("X-Amz-Security-Token") == theirs.get("X-Amz-Security-Token") == token
    assert ours["User-Agent"] == "brproxy"
    our_auth, their_auth = (
        parse_authorization(ours["Authorization"]),
        parse_authorization(theirs["Authorization"]),
    )
    assert (
        our_auth["credential"]
        == their_auth["credential"]
        == f"{ACCESS_KEY}/20250601/us-east-1/bedrock/aws4_request"
    )
    # BRProxy also sends (and so signs) an Accept header that boto3 leaves out; nothing else differs.
    assert set(our_auth["signed"].split(";")) == set(their_auth["signed"].split(";")) | {"accept"}

    # boto3 made to send the same Accept header signs byte-identically.
    with_accept = boto3_request(endpoint, operation, model_id, token=token, accept=accept)
    assert with_accept.body == reference.body
    same = parse_authorization(_text(with_accept.headers["Authorization"]))
    assert same == our_auth


@dataclass
class Recorded:
    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeBedrock:
    url: str
    requests: list[Recorded] = field(default_factory=list)
    replies: list[web.Response] = field(default_factory=list)


@pytest.fixture
async def fake_bedrock() -> AsyncIterator[FakeBedrock]:
    fake = FakeBedrock("")

    async def handle(request: web.Request) -> web.StreamResponse:
        fake.requests.append(
            Recorded(request.method, request.raw_path, dict(request.headers), await request.read())
        )
        if fake.replies:
            return fake.replies.pop(0)
        return web.json_response({"output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("model_id", MODEL_IDS)
async def test_on_the_wire_request_equals_boto3s(fake_bedrock: FakeBedrock, model_id: str) -> None:
    reference = boto3_request(fake_bedrock.url, "Converse", model_id, accept="application/json")
    body = reference.body if isinstance(reference.body, bytes) else reference.body.encode()
    async with BedrockRuntime(fake_bedrock.url, "us-east-1", Credentials(ACCESS_KEY, SECRET)) as runtime:
        answer, first_byte_ms = await runtime.converse(model_id, body)
    assert answer["output"]["message"]["content"] == [{"text": "ok"}]
    assert first_byte_ms >= 0
    (seen,) = fake_bedrock.requests
    assert seen.method == "POST"
    assert fake_bedrock.url + seen.raw_path == reference.url  # %3A (and %2F) kept on the wire
    assert seen.body == body
    assert seen.headers["Authorization"] == _text(reference.headers["Authorization"])
    assert seen.headers["X-Amz-Date"] == _text(reference.headers["X-Amz-Date"])
    assert seen.headers["Host"] == fake_bedrock.url.removeprefix("http://")


async def test_converse_stream_events_and_exception_frame(fake_bedrock: FakeBedrock) -> None:
    stream_body = (
        encode_event_message("messageStart", b'{"role":"assistant"}')
        + encode_event_message("contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"text":"Hi"}}')
        + encode_exception_message("throttlingException", b'{"message":"Too many tokens, slow down."}')
    )
    fake_bedrock.replies.append(
        web.Response(body=stream_body, headers={"Content-Type": "application/vnd.amazon.eventstream"})
    )
    async with BedrockRuntime(fake_bedrock.url, "us-east-1", Credentials(ACCESS_KEY, SECRET)) as runtime:
        stream = await runtime.converse_stream("anthropic.claude-3-haiku-20240307-v1:0", b"{}")
        seen: list[list[tuple[str, dict[str, Any]]]] = []
        with pytest.raises(BedrockError) as caught:
            async for batch in stream.event_batches():
                seen.append(batch)
        await stream.close()
    # Everything arrived in one read: one batch, yielded before the exception is raised.
    assert seen == [
        [
            ("messageStart", {"role": "assistant"}),
            ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        ]
    ]
    assert caught.value.name == "throttlingException"
    assert caught.value.status == 429
    assert caught.value.retry_after == 1
    assert stream.first_byte_ms is not None
    assert fake_bedrock.requests[0].headers["Accept"] == "application/vnd.amazon.eventstream"
    assert fake_bedrock.requests[0].raw_path.endswith("/converse-stream")


async def test_http_errors_become_bedrock_errors(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.replies.append(
        web.json_response(
            {"message": "The provided model identifier is invalid."},
            status=400,
            headers={
                "x-amzn-ErrorType": "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"
            },
        )
    )
    fake_bedrock.replies.append(
        web.json_response(
            {"message": "Too many requests"}, status=429, headers={"x-amzn-ErrorType": "ThrottlingException"}
        )
    )
    async with BedrockRuntime(fake_bedrock.url, "us-east-1", Credentials(ACCESS_KEY, SECRET)) as runtime:
        with pytest.raises(BedrockError) as first:
            await runtime.converse("anthropic.nope-v1:0", b"{}")
        with pytest.raises(BedrockError) as second:
            await runtime.converse_stream("anthropic.nope-v1:0", b"{}")
    assert (first.value.name, first.value.status, first.value.upstream_status) == (
        "ValidationException",
        400,
        400,
    )
    assert first.value.client_message == "The provided model identifier is invalid."
    assert (second.value.name, second.value.status, second.value.upstream_status) == (
        "ThrottlingException",
        429,
        429,
    )


async def test_unreachable_bedrock_is_service_unavailable() -> None:
    async with BedrockRuntime("http://127.0.0.1:9", "us-east-1", Credentials(ACCESS_KEY, SECRET)) as runtime:
        with pytest.raises(BedrockError) as caught:
            await runtime.converse("anthropic.claude-3-haiku-20240307-v1:0", b"{}")
    assert caught.value.name == "ServiceUnavailableException"
    assert caught.value.status == 503


def test_no_credentials_is_refused_before_sending() -> None:
    runtime = BedrockRuntime("http://127.0.0.1:9", "us-east-1", None)
    with pytest.raises(BedrockError) as caught:
        runtime._signed_headers(runtime._url("m", "converse"), b"{}", "application/json")
    assert caught.value.name == "UnrecognizedClientException"
    assert caught.value.client_message == "The gateway's AWS credentials were refused by Bedrock."


@pytest.mark.parametrize(
    ("status", "headers", "body", "name", "message"),
    [
        pytest.param(
            400,
            {"x-amzn-errortype": "ValidationException:http://internal.amazon.com/coral/x/"},
            b'{"message":"bad"}',
            "ValidationException",
            "bad",
            id="header-with-url-suffix",
        ),
        pytest.param(
            403,
            {},
            b'{"__type":"com.amazon.coral.service#AccessDeniedException","Message":"no"}',
            "AccessDeniedException",
            "no",
            id="type-field-with-namespace",
        ),
        pytest.param(
            429,
            {"x-amzn-errortype": "ThrottlingException"},
            b'{"__type":"Other","message":"slow"}',
            "ThrottlingException",
            "slow",
            id="header-wins",
        ),
        pytest.param(
            502, {}, b"<html>Bad Gateway</html>", "HTTP502", "<html>Bad Gateway</html>", id="not-json"
        ),
        pytest.param(500, {}, b"", "HTTP500", "", id="empty-body"),
        pytest.param(400, {}, b"[1,2]", "HTTP400", "", id="json-not-object"),
    ],
)
def test_error_from_response(
    status: int, headers: dict[str, str], body: bytes, name: str, message: str
) -> None:
    error = _error_from_response(status, headers, body)
    assert (error.name, error.message, error.upstream_status) == (name, message, status)


def test_the_body_boto3_serialises_is_json_we_can_read() -> None:
    reference = boto3_request("http://127.0.0.1:9", "Converse", "anthropic.claude-3-haiku-20240307-v1:0")
    body = reference.body if isinstance(reference.body, bytes) else reference.body.encode()
    assert orjson.loads(body) == {"messages": MESSAGES}


@pytest.mark.parametrize(
    ("environment", "url", "expected"),
    [
        pytest.param({}, "https://bedrock-runtime.us-east-1.amazonaws.com", None, id="none-set"),
        pytest.param(
            {"HTTPS_PROXY": "http://proxy.corp:3128"},
            "https://bedrock-runtime.us-east-1.amazonaws.com",
            "http://proxy.corp:3128",
            id="https-proxy",
        ),
        pytest.param(
            {"https_proxy": "http://proxy.corp:3128"},
            "https://bedrock-runtime.us-east-1.amazonaws.com",
            "http://proxy.corp:3128",
            id="lower-case",
        ),
        pytest.param(
            {"HTTP_PROXY": "http://proxy.corp:3128"},
            "https://bedrock-runtime.us-east-1.amazonaws.com",
            None,
            id="http-proxy-is-not-for-https",
        ),
        pytest.param(
            {"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": ".amazonaws.com"},
            "https://bedrock-runtime.us-east-1.amazonaws.com",
            None,
            id="no-proxy-domain",
        ),
        pytest.param(
            {"HTTP_PROXY": "http://proxy.corp:3128", "NO_PROXY": "127.0.0.1,localhost"},
            "http://127.0.0.1:9000",
            None,
            id="no-proxy-host",
        ),
    ],
)
def test_proxy_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], url: str, expected: str | None
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert proxy_for(url) == expected


async def test_calls_go_through_the_proxy_from_the_environment(
    fake_bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The endpoint's name does not resolve here: only the proxy can have answered.
    endpoint = "http://bedrock-runtime.us-east-1.amazonaws.invalid"
    proxy = fake_bedrock.url.replace("http://", "http://user:secret-password@")
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    runtime = BedrockRuntime(endpoint, "us-east-1", Credentials(ACCESS_KEY, SECRET))
    assert runtime.proxy_address == fake_bedrock.url  # the password stays out of logs
    async with runtime:
        answer, _ = await runtime.converse("anthropic.claude-3-haiku-20240307-v1:0", b"{}")
    assert answer["output"]["message"]["content"] == [{"text": "ok"}]
    (seen,) = fake_bedrock.requests
    # A forward proxy gets the absolute URL, the signed request unchanged, and its own credentials.
    assert seen.raw_path.startswith(endpoint + "/model/")
    assert seen.headers["Host"] == "bedrock-runtime.us-east-1.amazonaws.invalid"
    assert seen.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
    assert seen.headers["Proxy-Authorization"].startswith("Basic ")


def test_standard_aws_configuration_from_the_environment(aws_environment: pytest.MonkeyPatch) -> None:
    # AWS_REGION is the other SDKs' name; botocore itself reads only AWS_DEFAULT_REGION.
    aws_environment.setenv("AWS_REGION", "eu-west-3")
    aws_environment.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    aws_environment.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    runtime = BedrockRuntime.from_environment()
    assert runtime.region == "eu-west-3"
    assert runtime.endpoint_url == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    aws_environment.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "http://127.0.0.1:9")
    assert BedrockRuntime.from_environment().endpoint_url == "http://127.0.0.1:9"


async def test_credentials_from_a_profile_sign_the_calls(
    aws_environment: pytest.MonkeyPatch, tmp_path: Any, fake_bedrock: FakeBedrock
) -> None:
    (tmp_path / "credentials").write_text(
        f"[team]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = {SECRET}\n"
    )
    aws_environment.setenv("AWS_PROFILE", "team")
    aws_environment.setenv("AWS_DEFAULT_REGION", "us-west-2")
    aws_environment.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake_bedrock.url)
    async with BedrockRuntime.from_environment() as runtime:
        await runtime.converse("anthropic.claude-3-haiku-20240307-v1:0", b"{}")
    (seen,) = fake_bedrock.requests
    assert "Credential=AKIDPROFILE/" in seen.headers["Authorization"]
    assert "/us-west-2/bedrock/aws4_request" in seen.headers["Authorization"]


async def test_temporary_credentials_are_refreshed_off_the_event_loop(fake_bedrock: FakeBedrock) -> None:
    import threading

    from botocore.credentials import RefreshableCredentials

    refreshed_in: list[str] = []

    def refresh() -> dict[str, str]:
        refreshed_in.append(threading.current_thread().name)
        # Expiring in 12 minutes: inside botocore's 15-minute refresh window, so every check
        # refreshes; outside its 10-minute mandatory one, where every caller would.
        expiry = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=12)
        number = len(refreshed_in)
        return {
            "access_key": f"AKIDTEMP{number}",
            "secret_key": SECRET,
            "token": f"token-{number}",
            "expiry_time": expiry.isoformat(),
        }

    credentials = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    runtime = BedrockRuntime(fake_bedrock.url, "us-east-1", credentials, credential_check_s=0.05)
    async with runtime:
        deadline = asyncio.get_running_loop().time() + 5
        while len(refreshed_in) < 3:
            assert asyncio.get_running_loop().time() < deadline, "credentials were never refreshed"
            await asyncio.sleep(0.02)
        await runtime.converse("anthropic.claude-3-haiku-20240307-v1:0", b"{}")
    loop_thread = threading.current_thread().name
    assert all(name != loop_thread for name in refreshed_in[1:])
    (seen,) = fake_bedrock.requests
    # The call was signed with refreshed credentials, token included.
    assert "Credential=AKIDTEMP" in seen.headers["Authorization"]
    assert "Credential=AKIDTEMP1/" not in seen.headers["Authorization"]
    assert seen.headers["X-Amz-Security-Token"].startswith("token-")


async def test_credentials_that_cannot_be_refreshed_fail_the_call_cleanly(fake_bedrock: FakeBedrock) -> None:
    from botocore.credentials import RefreshableCredentials

    def metadata(minutes: int) -> dict[str, str]:
        expiry = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
        expires = expiry.isoformat()
        return {"access_key": "AKIDOLD", "secret_key": SECRET, "token": "t", "expiry_time": expires}

    def refresh() -> dict[str, str]:
        raise RuntimeError("the credential source is down: secret-detail")

    # Twelve minutes left at start: botocore tries a refresh, fails quietly, keeps them.
    credentials = RefreshableCredentials.create_from_metadata(metadata(12), refresh, "test")
    async with BedrockRuntime(fake_bedrock.url, "us-east-1", credentials, credential_check_s=3600) as runtime:
        # Seven minutes later, five are left: inside botocore's mandatory window, where they
        # must be refreshed to be used (the refresh source is still down).
        credentials._expiry_time = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
        with pytest.raises(BedrockError) as caught:
            await runtime.converse("anthropic.claude-3-haiku-20240307-v1:0", b"{}")
    assert caught.value.name == "ExpiredTokenException"
    assert caught.value.status == 502
    assert "secret-detail" not in str(caught.value) and "secret-detail" not in caught.value.client_message
    assert fake_bedrock.requests == []  # nothing was sent with credentials about to expire


async def test_credentials_whose_source_fails_at_start_are_loaded_in_the_background(
    fake_bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(translator.bedrock_client, "CREDENTIAL_RETRY_FIRST_S", 0.01)
    source_up = asyncio.Event()
    attempts: list[float] = []

    def load() -> Credentials:
        attempts.append(1)
        if not source_up.is_set():
            raise RuntimeError("the credential source is down: secret-detail")
        return Credentials(ACCESS_KEY, SECRET)

    async with BedrockRuntime(fake_bedrock.url, "us-east-1", None, load_credentials=load) as runtime:
        with pytest.raises(BedrockError) as caught:  # the source is down: a clean 502, nothing sent
            await runtime.converse("anthropic.claude-3-haiku-20240307-v1:0", b"{}")
        assert (caught.value.name, caught.value.status) == ("ExpiredTokenException", 502)
        assert fake_bedrock.requests == []
        await asyncio.sleep(0.1)
        assert len(attempts) >= 2  # retried, with backoff
        source_up.set()
        for _ in range(200):  # the backoff is at most 10 s; here it starts at 10 ms
            if runtime._credentials is not None:
                break
            await asyncio.sleep(0.05)
        answer, _ = await runtime.converse("anthropic.claude-3-haiku-20240307-v1:0", b"{}")
    assert answer["output"]["message"]["content"] == [{"text": "ok"}]
    assert f"Credential={ACCESS_KEY}/" in fake_bedrock.requests[0].headers["Authorization"]
    assert "secret-detail" not in caplog.text


def test_a_translator_starts_when_the_credential_source_is_down(
    aws_environment: pytest.MonkeyPatch,
) -> None:
    # A container credential source that refuses connections: botocore's chain raises.
    aws_environment.setenv("AWS_REGION", "eu-west-3")
    aws_environment.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:9/credentials")
    runtime = BedrockRuntime.from_environment()
    assert runtime._credentials is None
    assert runtime._load_credentials is not None
