"""The simulator run for real (``python -m bedrock_simulator``) and called with a real boto3 client."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import orjson
import psutil
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EventStreamError
from simulator_process import ACCESS_KEY, DEFAULT_TOKENS, SECRET, boto3_client

MODEL_ID = "us.anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture(scope="module")
def bedrock(simulator: str) -> Iterator[Any]:
    client = boto3_client(simulator)
    yield client
    client.close()


def _messages(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": text}]}]


def _stream(client: Any, **kwargs: Any) -> list[dict[str, Any]]:
    stream = client.converse_stream(modelId=MODEL_ID, **kwargs)["stream"]
    try:
        return list(stream)
    finally:
        stream.close()


def _deltas(events: list[dict[str, Any]]) -> list[str]:
    return [e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e]


def test_converse(bedrock: Any) -> None:
    response = bedrock.converse(modelId=MODEL_ID, messages=_messages("Hello simulator"))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ResponseMetadata"]["RequestId"]
    assert response["output"]["message"]["role"] == "assistant"
    text = response["output"]["message"]["content"][0]["text"]
    assert text.startswith("Simulated answer to: Hello simulator.")
    assert response["stopReason"] == "end_turn"
    assert response["usage"] == {"inputTokens": 7, "outputTokens": DEFAULT_TOKENS, "totalTokens": 23}
    assert response["metrics"]["latencyMs"] >= 0


STREAM_VS_PLAIN = [
    pytest.param({"messages": _messages("Hello simulator")}, id="plain"),
    pytest.param({"messages": _messages("Count to forty [[sim: tokens=40]]")}, id="tokens-directive"),
    pytest.param(
        {"messages": _messages("cut me [[sim: tokens=40]]"), "inferenceConfig": {"maxTokens": 5}},
        id="max-tokens",
    ),
    pytest.param(
        {"messages": _messages("stop please"), "inferenceConfig": {"stopSequences": ["every"]}},
        id="stop-sequence",
    ),
    pytest.param(
        {
            "system": [{"text": "Be brief."}],
            "messages": [
                {"role": "user", "content": [{"text": "first"}]},
                {"role": "assistant", "content": [{"text": "answer"}]},
                {"role": "user", "content": [{"text": "second [[sim: tokens=3]]"}]},
            ],
        },
        id="multi-turn-with-system",
    ),
]


@pytest.mark.parametrize("kwargs", STREAM_VS_PLAIN)
def test_stream_matches_converse(bedrock: Any, kwargs: dict[str, Any]) -> None:
    plain = bedrock.converse(modelId=MODEL_ID, **kwargs)
    events = _stream(bedrock, **kwargs)
    assert [next(iter(e)) for e in events] == [
        "messageStart",
        *["contentBlockDelta"] * len(_deltas(events)),
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert events[0]["messageStart"] == {"role": "assistant"}
    assert "".join(_deltas(events)) == plain["output"]["message"]["content"][0]["text"]
    assert events[-2]["messageStop"]["stopReason"] == plain["stopReason"]
    assert events[-1]["metadata"]["usage"] == plain["usage"]
    assert plain["usage"]["outputTokens"] == len(_deltas(events))


def test_max_tokens_truncation(bedrock: Any) -> None:
    kwargs: dict[str, Any] = {
        "messages": _messages("long please [[sim: tokens=50]]"),
        "inferenceConfig": {"maxTokens": 5},
    }
    plain = bedrock.converse(modelId=MODEL_ID, **kwargs)
    assert plain["stopReason"] == "max_tokens"
    assert plain["usage"]["outputTokens"] == 5
    assert plain["output"]["message"]["content"][0]["text"] == "Simulated answer to: long please."
    events = _stream(bedrock, **kwargs)
    assert len(_deltas(events)) == 5
    assert events[-2]["messageStop"]["stopReason"] == "max_tokens"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        pytest.param("ThrottlingException", 429, id="throttling"),
        pytest.param("ModelTimeoutException", 408, id="timeout"),
        pytest.param("ServiceUnavailableException", 503, id="unavailable"),
        pytest.param("ModelErrorException", 424, id="model-error"),
    ],
)
def test_error_directive(bedrock: Any, error: str, status: int) -> None:
    messages = _messages(f"fail [[sim: error={error}]]")
    with pytest.raises(ClientError) as caught:
        bedrock.converse(modelId=MODEL_ID, messages=messages)
    assert caught.value.response["Error"]["Code"] == error
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert caught.value.response["ResponseMetadata"]["RequestId"]
    # A stream fails the same way, as an HTTP error before any event.
    with pytest.raises(ClientError) as caught:
        bedrock.converse_stream(modelId=MODEL_ID, messages=messages)
    assert caught.value.response["Error"]["Code"] == error


@pytest.mark.parametrize(
    ("name", "after"),
    [
        pytest.param("throttlingException", 3, id="throttling-after-3"),
        pytest.param("modelStreamErrorException", 0, id="model-stream-error-at-once"),
        pytest.param("internalServerException", 100, id="after-all-deltas"),
    ],
)
def test_stream_error_directive(bedrock: Any, name: str, after: int) -> None:
    response = bedrock.converse_stream(
        modelId=MODEL_ID, messages=_messages(f"go [[sim: stream_error={name} after={after} tokens=8]]")
    )
    received: list[dict[str, Any]] = []
    # botocore leaves the connection open when a stream fails mid-way; close it ourselves.
    with pytest.raises(EventStreamError) as caught, closing(response["stream"]) as stream:
        for event in stream:
            received.append(event)
    assert caught.value.response["Error"]["Code"] == name
    assert next(iter(received[0])) == "messageStart"
    assert len(_deltas(received)) == min(after, 8)
    assert not any("messageStop" in e or "metadata" in e for e in received)


def test_no_usage_directive(bedrock: Any) -> None:
    events = _stream(bedrock, messages=_messages("quiet [[sim: no_usage]]"))
    assert next(iter(events[-1])) == "messageStop"
    assert not any("metadata" in e for e in events)


def test_latency_directive(bedrock: Any) -> None:
    started = time.perf_counter()
    response = bedrock.converse(modelId=MODEL_ID, messages=_messages("slow [[sim: latency_ms=150]]"))
    assert time.perf_counter() - started >= 0.15
    assert response["metrics"]["latencyMs"] >= 150


def test_validation_errors(bedrock: Any) -> None:
    with pytest.raises(ClientError) as caught:
        bedrock.converse(modelId="Not A Model!", messages=_messages("x"))
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert caught.value.response["Error"]["Message"] == "The provided model identifier is invalid."
    with pytest.raises(ClientError) as caught:
        bedrock.converse(
            modelId=MODEL_ID,
            messages=[
                {"role": "user", "content": [{"text": "a"}]},
                {"role": "user", "content": [{"text": "b"}]},
            ],
        )
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize(
    ("access_key", "secret", "code"),
    [
        pytest.param(ACCESS_KEY, "wrong-secret", "InvalidSignatureException", id="wrong-secret"),
        pytest.param("AKIDUNKNOWN", SECRET, "UnrecognizedClientException", id="unknown-access-key"),
    ],
)
def test_bad_credentials_are_refused(simulator: str, access_key: str, secret: str, code: str) -> None:
    client = boto3_client(simulator, access_key=access_key, secret=secret)
    try:
        with pytest.raises(ClientError) as caught:
            client.converse(modelId=MODEL_ID, messages=_messages("let me in"))
        assert caught.value.response["Error"]["Code"] == code
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    finally:
        client.close()


def _raw_post(url: str, body: bytes, *, signed: bool) -> tuple[int, dict[str, str], dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if signed:
        aws_request = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(Credentials(ACCESS_KEY, SECRET), "bedrock", "us-east-1").add_auth(aws_request)
        headers = dict(aws_request.headers.items())
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, _lower(response.headers), orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, _lower(error.headers), orjson.loads(error.read())


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def test_unsigned_and_unknown_routes(simulator: str) -> None:
    body = orjson.dumps({"messages": _messages("x")})
    status, headers, payload = _raw_post(
        f"{simulator}/model/amazon.nova-micro-v1%3A0/converse", body, signed=False
    )
    assert status == 403
    assert headers["x-amzn-errortype"].startswith("MissingAuthenticationTokenException:")
    assert headers["x-amzn-requestid"]
    assert payload == {"message": "Missing Authentication Token"}

    status, headers, payload = _raw_post(
        f"{simulator}/model/amazon.nova-micro-v1%3A0/nothing", body, signed=True
    )
    assert status == 404
    assert headers["x-amzn-errortype"].startswith("UnknownOperationException:")

    status, headers, payload = _raw_post(
        f"{simulator}/model/amazon.nova-micro-v1%3A0/converse", body, signed=True
    )
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert payload["output"]["message"]["content"][0]["text"].startswith("Simulated answer to: x.")


def _write_syscalls(simulator: str) -> int:
    """How many write system calls the simulator process has made (Linux's /proc/<pid>/io)."""
    port = simulator.rsplit(":", 1)[1]
    (process,) = [
        child
        for child in psutil.Process().children()
        if "bedrock_simulator" in child.cmdline() and port in child.cmdline()
    ]
    return int(process.io_counters().write_count)


def test_an_unpaced_stream_leaves_in_one_write(bedrock: Any, simulator: str) -> None:
    """Frames written in one event-loop turn go out together, as a remote Bedrock's arrive in one read.

    Sent one write per frame, a 40-token stream cost the simulator 45 system calls and the
    translator as many reads and wake-ups, which benchmarks then charged to the gateway.
    """
    requests = 5
    before = _write_syscalls(simulator)
    for _ in range(requests):
        events = _stream(bedrock, messages=_messages("one burst [[sim: tokens=40]]"))
        assert len(_deltas(events)) == 40
    writes = _write_syscalls(simulator) - before
    assert writes <= requests, f"{writes} writes for {requests} streams of 44 frames each"
