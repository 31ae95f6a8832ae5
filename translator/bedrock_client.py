"""Calls to the Bedrock Runtime API: boto3's configuration, SigV4 signing, pooled HTTP/1.1.

boto3 resolves everything the standard AWS configuration says (the default credential
chain, `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, `AWS_CA_BUNDLE`,
profiles); each request is signed with the same SigV4 signature a boto3 client would compute
(`sigv4.py`, checked against botocore's in the tests) and travels over pooled keep-alive
connections (`pooled_http.py`) instead of a full boto3 call: the same request on the wire,
at a fraction of the CPU. Streamed answers are decoded by `eventstream.py`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
import os
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import boto3
import botocore.session
import orjson
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials

from core.admission import MAX_CALL_SECONDS
from translator.bedrock_errors import BedrockError
from translator.eventstream import EventStreamDecoder, InvalidEventStream
from translator.pooled_http import HttpFailure, HttpResponse, PooledHttp
from translator.sigv4 import SigningCredentials, SigV4Signer

__all__ = ["BedrockRuntime", "BedrockStream", "InvokeResult", "proxy_for"]


@functools.lru_cache(maxsize=1024)
def _label(model_id: str) -> str:
    """A model id percent-encoded as botocore encodes a REST-JSON URI label (':' → %3A)."""
    return quote(model_id, safe="-._~")


log = logging.getLogger("translator.bedrock")

_JSON = "application/json"


def _error_from_response(status: int, headers: dict[str, str], body: bytes) -> BedrockError:
    name = headers.get("x-amzn-errortype", "")
    message = ""
    try:
        parsed = orjson.loads(body) if body else {}
        if isinstance(parsed, dict):
            message = str(parsed.get("message") or parsed.get("Message") or "")
            name = name or str(parsed.get("__type", ""))
    except orjson.JSONDecodeError:
        message = body[:200].decode(errors="replace")
    name = name.split(":", 1)[0].rsplit("#", 1)[-1] or f"HTTP{status}"
    return BedrockError(name, message, status)


@dataclass(slots=True)
class BedrockStream:
    """An open event-stream answer; iterate `event_batches()` for (event type, payload) pairs."""

    response: HttpResponse
    started: float

    first_byte_ms: int | None = None
    finished: bool = False
    """Set by the reader once the answer is complete (or failed), before the last write."""

    async def event_batches(self) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
        """(event type, payload) pairs, in batches: the events that arrived together.

        A batch is everything decoded from one read of the socket; nothing waits for more
        data. The caller writes a batch's frames with one write, so a burst of tokens costs
        one send through every hop instead of one per token. An exception message ends the
        stream: the events before it are yielded first, then BedrockError is raised.
        """
        decoder = EventStreamDecoder()
        async for chunk in self._chunks():
            if self.first_byte_ms is None:
                self.first_byte_ms = int((time.monotonic() - self.started) * 1000)
            corrupt: InvalidEventStream | None = None
            try:
                messages = decoder.feed(chunk)
            except InvalidEventStream as error:
                corrupt, messages = error, error.messages  # the intact ones go out first
            batch: list[tuple[str, dict[str, Any]]] = []
            for message in messages:
                headers = message.headers
                kind = headers.get(":message-type")
                if kind == "event":
                    batch.append(
                        (
                            str(headers.get(":event-type", "")),
                            orjson.loads(message.payload) if message.payload else {},
                        )
                    )
                    continue
                if batch:
                    yield batch
                if kind == "exception":
                    payload = orjson.loads(message.payload) if message.payload else {}
                    raise BedrockError(
                        str(headers.get(":exception-type", "")), str(payload.get("message", ""))
                    )
                unexpected = f"unexpected event-stream message type {kind!r}"
                raise BedrockError("InternalServerException", unexpected)
            if batch:
                yield batch
            if corrupt is not None:
                reason = f"corrupt event stream from Bedrock: {corrupt}"
                raise BedrockError("InternalServerException", reason)

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.chunks():
                yield chunk
        except HttpFailure as error:  # the events before it were yielded: the stream ends in an error
            raise BedrockError(
                "InternalServerException", f"the stream from Bedrock broke off: {error}"
            ) from None

    async def anthropic_event_batches(self) -> AsyncIterator[list[dict[str, Any]]]:
        """InvokeModelWithResponseStream's Anthropic events (each `chunk` carries one, base64),
        in the batches `event_batches` gives."""
        async for batch in self.event_batches():
            events = []
            for event_type, payload in batch:
                if event_type != "chunk":
                    continue
                try:
                    event = orjson.loads(base64.b64decode(payload.get("bytes", "")))
                except (binascii.Error, ValueError, orjson.JSONDecodeError):
                    raise BedrockError("InternalServerException", "undecodable chunk in the stream") from None
                if isinstance(event, dict):
                    events.append(event)
            if events:
                yield events

    async def close(self) -> None:
        self.response.close()


@dataclass(slots=True)
class InvokeResult:
    """A non-stream InvokeModel answer with the usage Bedrock reports in its headers."""

    body: dict[str, Any]
    input_tokens: int | None
    output_tokens: int | None
    invocation_latency_ms: int | None
    first_byte_ms: int


def _header_int(headers: dict[str, str], name: str) -> int | None:
    value = headers.get(name)
    return int(value) if value is not None and str(value).isdigit() else None


def proxy_for(url: str) -> str | None:
    """The proxy for `url` from HTTPS_PROXY / HTTP_PROXY and NO_PROXY (either case), as botocore
    and curl choose it; None for a direct connection.

    Only these variables: nothing like ~/.netrc, which could put a second Authorization
    header next to the SigV4 one.
    """
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


_MANDATORY_REFRESH_S = 10 * 60
"""botocore's own mandatory-refresh window: inside it, credentials must be refreshed to be used."""
CREDENTIAL_CHECK_S = 60.0
"""How often temporary AWS credentials are checked (and refreshed if due) off the event loop."""
CREDENTIAL_RETRY_FIRST_S = 0.5
CREDENTIAL_RETRY_MAX_S = 10.0
"""The first and the longest wait between attempts to load credentials whose source failed
at start (doubling in between)."""


class BedrockRuntime:
    """A Bedrock Runtime client: Converse(Stream), InvokeModel(WithResponseStream), CountTokens."""

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        credentials: Credentials | None,
        *,
        ca_bundle: str | None = None,
        credential_check_s: float = CREDENTIAL_CHECK_S,
        load_credentials: Callable[[], Credentials | None] | None = None,
    ) -> None:
        """`load_credentials`, given when `credentials` could not be loaded (their source was
        failing), is retried off the event loop until it gives some; calls fail cleanly
        until then."""
        self.endpoint_url = endpoint_url.rstrip("/")
        self.region = region
        self._credentials = credentials
        self._signer = SigV4Signer(region)
        self._ca_bundle = ca_bundle
        self._credential_check_s = credential_check_s
        self._refresher: asyncio.Task[None] | None = None
        self._load_credentials = load_credentials
        self._loader: asyncio.Task[None] | None = None
        self._frozen: ReadOnlyCredentials | None = None
        """The credentials calls are signed with; refreshed off the event loop (see below)."""
        self._http: PooledHttp | None = None
        self._path_prefix = urllib.parse.urlsplit(self.endpoint_url).path
        self.proxy = proxy_for(self.endpoint_url)
        """The HTTP(S) proxy Bedrock calls go through, from the environment as botocore reads it."""

    @property
    def proxy_address(self) -> str | None:
        """The proxy without any user:password in it, fit for a log line."""
        if self.proxy is None:
            return None
        parts = urllib.parse.urlsplit(self.proxy)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")

    @classmethod
    def from_environment(cls) -> BedrockRuntime:
        """Configured exactly as `boto3.client("bedrock-runtime")` would be."""
        core = botocore.session.get_session()
        session = boto3.session.Session(botocore_session=core)
        # botocore reads AWS_DEFAULT_REGION; the other AWS SDKs (and many users) set AWS_REGION.
        region = session.region_name or os.environ.get("AWS_REGION")
        if not region:
            region = "us-east-1"
            log.warning("no AWS region configured (AWS_REGION / AWS_DEFAULT_REGION); using %s", region)
        # The client only resolves the endpoint (AWS_ENDPOINT_URL_BEDROCK_RUNTIME, FIPS, ...):
        # placeholder keys keep it from loading the credential chain, which is done below.
        client = session.client(
            "bedrock-runtime",
            region_name=region,
            aws_access_key_id="-",
            aws_secret_access_key="-",  # noqa: S106  (a placeholder that signs nothing)
        )
        ca_bundle = core.get_config_variable("ca_bundle")  # AWS_CA_BUNDLE or the profile's
        try:
            credentials = session.get_credentials()
        except Exception as error:  # a source in the chain failed (IMDS, a container's, SSO, STS)
            # Start anyway, and keep trying: a translator that refused to start would leave
            # the whole gateway down (and a pod crash-looping) for as long as the source is.
            # Never the exception text: it could quote the source's answer.
            log.warning(
                "loading AWS credentials failed (%s); retrying in the background", type(error).__name__
            )
            return cls(
                client.meta.endpoint_url,
                client.meta.region_name,
                None,
                ca_bundle=ca_bundle,
                load_credentials=session.get_credentials,
            )
        if credentials is None:
            log.warning("no AWS credentials found: Bedrock calls will fail until some are configured")
        return cls(client.meta.endpoint_url, client.meta.region_name, credentials, ca_bundle=ca_bundle)

    async def __aenter__(self) -> BedrockRuntime:
        if self._credentials is not None:
            await self._use(self._credentials)
        elif self._load_credentials is not None:
            self._loader = asyncio.create_task(
                self._load_off_loop(self._load_credentials), name="aws-credentials"
            )
        # Long generations are normal: no overall deadline, only for connecting and for silence.
        # A non-streamed answer is silent until it is whole, which may take as long as Bedrock
        # lets one inference run (an hour): given up on earlier, it would cost us and bill nobody.
        self._http = PooledHttp(
            self.endpoint_url,
            proxy=self.proxy,
            ca_bundle=self._ca_bundle,
            connect_timeout_s=10,
            read_timeout_s=MAX_CALL_SECONDS,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in (self._refresher, self._loader):
            if task is not None:
                task.cancel()
        if self._http is not None:
            self._http.close()

    async def _use(self, credentials: Credentials) -> None:
        """Sign with `credentials` from now on (keeping temporary ones fresh)."""
        await self._freeze(credentials)
        self._credentials = credentials
        if isinstance(credentials, RefreshableCredentials):
            self._refresher = asyncio.create_task(self._refresh_off_loop(), name="aws-credentials")

    async def _load_off_loop(self, load: Callable[[], Credentials | None]) -> None:
        """Retry loading credentials whose source failed at start, with backoff, from a thread."""
        wait = CREDENTIAL_RETRY_FIRST_S
        while True:
            await asyncio.sleep(wait)
            try:
                credentials = await asyncio.to_thread(load)
            except Exception as error:  # still failing: the text is not logged (see from_environment)
                log.debug("loading AWS credentials failed again (%s)", type(error).__name__)
                wait = min(wait * 2, CREDENTIAL_RETRY_MAX_S)
                continue
            if credentials is None:
                log.warning("no AWS credentials found: Bedrock calls will fail until some are configured")
            else:
                log.info("AWS credentials loaded")
                await self._use(credentials)
            return

    async def _refresh_off_loop(self) -> None:
        """Keep temporary credentials (a role, SSO, IMDS, a container's) fresh from a thread.

        botocore refreshes them inside whichever `get_frozen_credentials` call first finds them
        within 15 minutes of expiry: on the event loop, that call (to STS, or the instance
        metadata service) would stall every request in flight. So requests sign with a
        snapshot, and only this task asks botocore, from a thread, every
        `credential_check_s`: the refresh happens there, and the snapshot it returns is
        always more than 14 minutes from expiry while the credential source answers.
        """
        assert self._credentials is not None
        while True:
            await asyncio.sleep(self._credential_check_s)
            await self._freeze(self._credentials)

    async def _freeze(self, credentials: Credentials) -> None:
        """Take a new snapshot of `credentials` from a thread (botocore refreshes them there if due).

        A failure keeps the last snapshot: the next check tries again, and a call that finds
        the snapshot missing or about to expire asks botocore itself (see _signed_headers).
        """
        try:
            self._frozen = await asyncio.to_thread(credentials.get_frozen_credentials)
        except Exception as error:  # botocore raises many kinds
            # Never the exception text: it could quote a credential source's answer.
            log.warning("refreshing AWS credentials failed (%s); retrying", type(error).__name__)

    def _path(self, model_id: str, operation: str) -> str:
        return f"{self._path_prefix}/model/{_label(model_id)}/{operation}"

    def _url(self, model_id: str, operation: str) -> str:
        return self.endpoint_url + self._path(model_id, operation)

    def _signed_headers(self, url: str, body: bytes, accept: str) -> dict[str, str]:
        if self._credentials is None:
            if self._loader is not None and not self._loader.done():
                raise BedrockError("ExpiredTokenException", "AWS credentials could not be loaded yet")
            raise BedrockError("UnrecognizedClientException", "no AWS credentials are configured")
        frozen = self._frozen
        stale = isinstance(self._credentials, RefreshableCredentials) and self._credentials.refresh_needed(
            _MANDATORY_REFRESH_S
        )
        if frozen is None or stale:
            # Not entered yet, or the background refresh could not keep them fresh (its
            # source failing): ask botocore here, which refreshes (blocking) or fails,
            # rather than sign with credentials about to expire.
            try:
                frozen = self._frozen = self._credentials.get_frozen_credentials()
            except Exception as error:  # botocore raises many kinds; the text is not logged
                reason = f"AWS credentials could not be refreshed ({type(error).__name__})"
                raise BedrockError("ExpiredTokenException", reason) from None
        headers = self._signer.sign(
            url,
            body,
            {"Content-Type": _JSON, "Accept": accept},
            SigningCredentials(frozen.access_key, frozen.secret_key, frozen.token),
        )
        headers["User-Agent"] = "brproxy"  # not signed, as botocore does not sign it either
        return headers

    async def _post(self, model_id: str, operation: str, body: bytes, accept: str) -> HttpResponse:
        assert self._http is not None, "use BedrockRuntime as an async context manager"
        path = self._path(model_id, operation)
        headers = self._signed_headers(self.endpoint_url + path, body, accept)
        try:
            return await self._http.post(path, headers, body)  # the path exactly as signed
        except HttpFailure as error:
            raise BedrockError("ServiceUnavailableException", f"cannot reach Bedrock ({error})") from None

    async def _call(self, model_id: str, operation: str, body: bytes) -> tuple[Any, dict[str, str], int]:
        """One JSON call: (parsed answer, response headers, milliseconds until it was read)."""
        started = time.monotonic()
        async with await self._post(model_id, operation, body, _JSON) as response:
            try:
                raw = await response.read()
            except HttpFailure as error:
                raise BedrockError(
                    "ServiceUnavailableException", f"Bedrock's answer broke off ({error})"
                ) from None
            elapsed = int((time.monotonic() - started) * 1000)
            if response.status >= 300:
                raise _error_from_response(response.status, response.headers, raw)
            try:
                return orjson.loads(raw), response.headers, elapsed
            except orjson.JSONDecodeError:
                raise BedrockError("InternalServerException", "Bedrock's answer is not JSON") from None

    async def converse(self, model_id: str, body: bytes) -> tuple[dict[str, Any], int]:
        """POST /model/{id}/converse → (response JSON, first-byte latency in ms)."""
        answer, _, elapsed = await self._call(model_id, "converse", body)
        return answer, elapsed

    async def converse_stream(self, model_id: str, body: bytes) -> BedrockStream:
        """POST /model/{id}/converse-stream; raises BedrockError if Bedrock refuses the call."""
        return await self._open_stream(model_id, "converse-stream", body)

    async def invoke_model(self, model_id: str, body: bytes) -> InvokeResult:
        """POST /model/{id}/invoke (a model's native body, e.g. Anthropic's Messages or an embedding)."""
        answer, headers, elapsed = await self._call(model_id, "invoke", body)
        return InvokeResult(
            answer,
            _header_int(headers, "x-amzn-bedrock-input-token-count"),
            _header_int(headers, "x-amzn-bedrock-output-token-count"),
            _header_int(headers, "x-amzn-bedrock-invocation-latency"),
            elapsed,
        )

    async def invoke_model_stream(self, model_id: str, body: bytes) -> BedrockStream:
        """POST /model/{id}/invoke-with-response-stream; iterate `anthropic_event_batches()` for Claude."""
        return await self._open_stream(model_id, "invoke-with-response-stream", body)

    async def count_tokens(self, model_id: str, body: bytes) -> int:
        """POST /model/{id}/count-tokens with `{"input": {...}}`; returns `inputTokens`."""
        answer, _, _ = await self._call(model_id, "count-tokens", body)
        return int(answer.get("inputTokens", 0))

    async def _open_stream(self, model_id: str, operation: str, body: bytes) -> BedrockStream:
        started = time.monotonic()
        response = await self._post(model_id, operation, body, "application/vnd.amazon.eventstream")
        if response.status >= 300:
            async with response:
                try:
                    raw = await response.read()
                except HttpFailure:
                    raw = b""
                raise _error_from_response(response.status, response.headers, raw)
        return BedrockStream(response, started)
