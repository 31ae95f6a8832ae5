"""Before any load: does a proxy hand back exactly the simulator's answer, streamed and not?

Throughput means nothing if the answers are wrong, so each proxy gets one non-stream and one
stream request with the benchmark's prompt; the text it returns (for a stream, the `delta`
contents of the server-sent events joined) must equal what the simulator answers to the same
prompt when asked directly.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

__all__ = ["AnswerCheck", "check_answers", "openai_stream_text"]


@dataclass(frozen=True)
class AnswerCheck:
    proxy: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"  {self.proxy:<10} {'ok' if self.ok else 'WRONG'}: {self.detail}"


def openai_stream_text(raw: bytes) -> tuple[str, int, bool]:
    """Joined `delta.content` of an OpenAI chat-completion event stream, the number of content
    chunks, and whether it ended with `data: [DONE]`."""
    parts: list[str] = []
    done = False
    for line in raw.decode().splitlines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            continue
        event = json.loads(data)
        if "error" in event:
            raise ValueError(f"error event in the stream: {data[:300]}")
        for choice in event.get("choices", []):
            content = (choice.get("delta") or {}).get("content")
            if content:
                parts.append(content)
    return "".join(parts), len(parts), done


def _post(url: str, body: dict[str, Any], headers: dict[str, str], ca_file: str | None) -> bytes:
    context: ssl.SSLContext | None = None
    if url.startswith("https:"):
        context = ssl.create_default_context(cafile=ca_file)
        context.check_hostname = False  # the stack's self-signed certificate names localhost
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={**headers, "content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60, context=context) as response:
        return bytes(response.read())


def check_answers(
    proxy: str,
    url: str,
    headers: dict[str, str],
    body: dict[str, Any],
    expected: str,
    ca_file: str | None = None,
) -> AnswerCheck:
    """One non-stream and one stream request of `body` to `url`, compared with `expected`."""
    try:
        plain = json.loads(_post(url, {**body, "stream": False}, headers, ca_file))
        plain_text = plain["choices"][0]["message"]["content"]
        streamed, chunks, done = openai_stream_text(_post(url, {**body, "stream": True}, headers, ca_file))
    except urllib.error.HTTPError as error:
        return AnswerCheck(proxy, False, f"HTTP {error.code}: {error.read()[:300]!r}")
    except (OSError, ValueError, KeyError, IndexError) as error:
        return AnswerCheck(proxy, False, f"{type(error).__name__}: {error}"[:400])
    problems = []
    if plain_text != expected:
        problems.append(f"non-stream text {plain_text!r}")
    if streamed != expected:
        problems.append(f"streamed text {streamed!r}")
    if not done:
        problems.append("stream did not end with [DONE]")
    if problems:
        return AnswerCheck(proxy, False, "; ".join(problems) + f"; the simulator answers {expected!r}")
    return AnswerCheck(
        proxy,
        True,
        f"non-stream and stream ({chunks} content chunks) both return the simulator's "
        f"{len(expected.split())}-word answer exactly",
    )
