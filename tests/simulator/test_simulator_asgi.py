"""The ASGI app driven in-process: framing per ASGI message, pacing, disconnects, lifespan, env options."""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping
from typing import Any

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer

from bedrock_simulator import SimulatorConfig, create_app
from bedrock_simulator.__main__ import build_parser

STREAM_PATH = b"/model/amazon.nova-micro-v1%3A0/converse-stream"
SIGNED_FORM = (
    b"AWS4-HMAC-SHA256 Credential=AKID/{date}/us-east-1/bedrock/aws4_request, "
    b"SignedHeaders=host;x-amz-date, Signature=" + b"0" * 64
)


def _scope(path: bytes, method: str = "POST") -> dict[str, Any]:
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()).encode()
    return {
        "type": "http",
        "method": method,
        "path": path.decode(),
        "raw_path": path,
        "query_string": b"",
        # Form-only checking (no secret configured) accepts any well-formed signature.
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"x-amz-date", amz_date),
            (b"authorization", SIGNED_FORM.replace(b"{date}", amz_date[:8])),
        ],
    }


async def _call(
    config: SimulatorConfig, path: bytes, body: bytes, *, disconnect_after: float | None = None
) -> list[dict[str, Any]]:
    app = create_app(config)
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        if disconnect_after is None:
            await asyncio.Event().wait()
        await asyncio.sleep(disconnect_after or 0)
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app(_scope(path), receive, send)
    return sent


def _body(text: str) -> bytes:
    return orjson.dumps({"messages": [{"role": "user", "content": [{"text": text}]}]})


def test_each_event_is_its_own_asgi_message() -> None:
    sent = asyncio.run(_call(SimulatorConfig(), STREAM_PATH, _body("hi [[sim: tokens=4]]")))
    start, *bodies = sent
    assert start["status"] == 200
    assert (b"content-type", b"application/vnd.amazon.eventstream") in start["headers"]
    assert any(name == b"x-amzn-requestid" for name, _ in start["headers"])
    assert [m["more_body"] for m in bodies] == [True] * (len(bodies) - 1) + [False]
    kinds = []
    for message in bodies:
        buffer = EventStreamBuffer()
        buffer.add_data(message["body"])
        [event] = list(buffer)
        kinds.append(event.headers[":event-type"])
    assert kinds == [
        "messageStart",
        *["contentBlockDelta"] * 4,
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]


def test_tokens_per_second_paces_the_stream() -> None:
    started = time.perf_counter()
    sent = asyncio.run(
        _call(SimulatorConfig(tokens_per_second=200, latency_ms=20), STREAM_PATH, _body("[[sim: tokens=11]]"))
    )
    # 20 ms to first event, then 10 gaps of 5 ms.
    assert time.perf_counter() - started >= 0.065
    assert sent[-1]["more_body"] is False


def test_paced_stream_stops_when_client_leaves() -> None:
    started = time.perf_counter()
    sent = asyncio.run(
        _call(
            SimulatorConfig(tokens_per_second=50),
            STREAM_PATH,
            _body("[[sim: tokens=500]]"),
            disconnect_after=0.05,
        )
    )
    # 500 tokens at 50/s would take 10 s.
    assert time.perf_counter() - started < 1.0
    assert len(sent) < 20


def test_non_stream_waits_for_whole_generation() -> None:
    started = time.perf_counter()
    sent = asyncio.run(
        _call(
            SimulatorConfig(tokens_per_second=100),
            b"/model/amazon.nova-micro-v1%3A0/converse",
            _body("[[sim: tokens=5]]"),
        )
    )
    assert time.perf_counter() - started >= 0.05
    payload = orjson.loads(sent[1]["body"])
    assert payload["usage"]["outputTokens"] == 5
    assert payload["metrics"]["latencyMs"] >= 50


@pytest.mark.parametrize(
    ("path", "status", "error_type"),
    [
        pytest.param(
            b"/model/amazon.nova-micro-v1%3A0/invoke", 404, b"UnknownOperationException", id="invoke"
        ),
        pytest.param(b"/model/BAD%20ID/converse", 400, b"ValidationException", id="bad-model-id"),
        pytest.param(b"/elsewhere", 404, b"UnknownOperationException", id="unknown-path"),
    ],
)
def test_error_routes(path: bytes, status: int, error_type: bytes) -> None:
    start, body = asyncio.run(_call(SimulatorConfig(), path, _body("x")))
    assert start["status"] == status
    headers = dict(start["headers"])
    assert headers[b"x-amzn-errortype"].startswith(error_type + b":http://internal.amazon.com/coral/")
    assert set(orjson.loads(body["body"])) == {"message"}


def test_health_and_lifespan() -> None:
    app = create_app()

    async def run() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

        async def receive() -> dict[str, Any]:
            return incoming.pop(0)

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        await app({"type": "lifespan"}, receive, send)
        await app({"type": "http", "method": "GET", "path": "/health", "raw_path": b"/health"}, receive, send)
        return sent

    sent = asyncio.run(run())
    assert [m["type"] for m in sent[:2]] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert sent[2]["status"] == 200
    assert sent[3]["body"] == b"ok"


def test_options_default_to_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRPROXY_SIM_LATENCY_MS", "25")
    monkeypatch.setenv("BRPROXY_SIM_TOKENS_PER_SECOND", "80")
    monkeypatch.setenv("BRPROXY_SIM_ACCESS_KEY_ID", "AKENV")
    monkeypatch.setenv("BRPROXY_SIM_SECRET_ACCESS_KEY", "secret-env")
    args = build_parser().parse_args(["--port", "1234", "--latency-ms", "5"])
    assert (args.port, args.latency_ms, args.tokens_per_second) == (1234, 5.0, 80.0)
    assert (args.access_key_id, args.secret_access_key, args.output_tokens) == ("AKENV", "secret-env", 16)
