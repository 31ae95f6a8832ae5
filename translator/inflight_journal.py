"""The translator's journal of paid calls in flight, so that a killed translator's calls are
billed for what their clients received and their reservations freed within seconds.

A call's usage event reaches the spool (`usage_spool.py`) only when the call ends. A
translator killed mid-call (SIGKILL, the OOM killer, a node drain) would leave nothing: the
client kept the tokens it had received unbilled, and authz kept the call's reservation until
it expired. So every paid call is journaled while it runs, one line per step, each one
`write` syscall to an append-only file (from then on it survives the process: the bytes are
in the kernel's page cache):

- `b` (begin), when the request arrives: its id and key (a successor frees its reservation);
- `m` (model), once the Bedrock call is set: model, Bedrock id, API, the prompt and an input
  estimate, the output ceiling;
- `t` (text), before each write to a streaming client: the text it is about to receive, and
  Bedrock's token counts when they arrived: the journal never holds less than was sent;
- `e` (end), once the call's own usage event is in the spool.

A successor (the restarted process, or a sibling worker) that adopts a dead owner's files
(`UsageSpool.adopt_orphans`, under the dead owner's lock) turns each call without an `e`
into a usage event (`recover`): billed as an estimate of what was sent when its client
received any of the answer, else a release that frees its reservation. The meter bills an
event id once, so a call whose real event also survives is billed once, by whichever
arrives first: the adopted spool's real events ship before the recovered ones.

Files are `<owner>.inflight-<sequence>.journal` (JSON lines); a new file is begun past
`ROTATE_BYTES`, and a finished file is deleted once every call begun in it has ended.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from core.usage import UsageEvent

__all__ = ["InflightJournal", "journal_files", "recover"]

log = logging.getLogger("translator.journal")

ROTATE_BYTES = 16 * 1024 * 1024
PROMPT_CHARS = 8192
"""A journaled call keeps this much of its prompt for the chat log of a recovered call."""


@dataclass(slots=True)
class _File:
    path: Path
    fd: int
    size: int = 0
    open_calls: set[str] = field(default_factory=set)


class InflightJournal:
    """The calls one translator process has in flight (not safe across threads: the event
    loop's only)."""

    def __init__(self, directory: Path, owner: str) -> None:
        self.directory = directory
        self.owner = owner
        self._sequence = 0
        self._current: _File | None = None
        self._files: list[_File] = []
        self._file_of: dict[str, _File] = {}

    def _write(self, event_id: str, record: dict[str, Any]) -> None:
        file = self._file_of.get(event_id)
        if file is None:
            return  # never begun (not a paid call) or already ended
        line = orjson.dumps(record) + b"\n"
        os.write(file.fd, line)
        file.size += len(line)

    def begin(self, event_id: str, key_id: int) -> None:
        if event_id in self._file_of:
            return
        file = self._current
        if file is None or file.size >= ROTATE_BYTES:
            file = self._rotate()
        file.open_calls.add(event_id)
        self._file_of[event_id] = file
        self._write(event_id, {"r": "b", "id": event_id, "key": key_id, "at": time.time()})

    def model(self, event: UsageEvent, input_estimate: int, output_ceiling: int) -> None:
        self._write(
            event.event_id,
            {
                "r": "m",
                "id": event.event_id,
                "model": event.model,
                "bedrock_model_id": event.bedrock_model_id,
                "api": event.api,
                "stream": event.stream,
                "session": event.client_session_id,
                "user": event.user,
                "prompt": event.prompt[:PROMPT_CHARS],
                "input": input_estimate,
                "ceiling": output_ceiling,
                "prices": event.prices,
            },
        )

    def sent(self, event_id: str, text: str, counts: dict[str, int] | None = None) -> None:
        """Before the client is sent more of the answer: its text, and the token counts Bedrock
        gave so far (`input`, `output`, `cache_read`, `cache_write`), if any."""
        record: dict[str, Any] = {"r": "t", "id": event_id, "text": text}
        if counts:
            record["n"] = counts
        self._write(event_id, record)

    def end(self, event_id: str) -> None:
        """The call's own usage event is in the spool: nothing to recover for it."""
        file = self._file_of.get(event_id)
        if file is None:
            return
        self._write(event_id, {"r": "e", "id": event_id})
        del self._file_of[event_id]
        file.open_calls.discard(event_id)
        if not file.open_calls and file is not self._current:
            self._drop(file)

    def _rotate(self) -> _File:
        old = self._current
        self._sequence += 1
        path = self.directory / f"{self.owner}.inflight-{self._sequence:06d}.journal"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._current = _File(path, fd)
        self._files.append(self._current)
        if old is not None and not old.open_calls:
            self._drop(old)
        return self._current

    def _drop(self, file: _File) -> None:
        os.close(file.fd)
        with contextlib.suppress(FileNotFoundError):
            file.path.unlink()
        self._files.remove(file)

    @property
    def open_calls(self) -> int:
        return len(self._file_of)

    def close(self) -> None:
        """Close the files; calls still open stay on disk for a successor to recover."""
        for file in list(self._files):
            if file.open_calls:
                os.close(file.fd)
            else:
                self._drop(file)
        self._files.clear()
        self._current = None


def journal_files(directory: Path, owner: str) -> list[Path]:
    return sorted(directory.glob(f"{owner}.inflight-*.journal"))


@dataclass(slots=True)
class _Call:
    key_id: int
    at: float
    meta: dict[str, Any] | None = None
    text: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    sent: bool = False


def recover(paths: list[Path]) -> list[UsageEvent]:
    """The usage events of a dead translator's unfinished calls, from its journal files."""
    calls: dict[str, _Call] = {}
    for path in paths:
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            continue
        for line in content.splitlines():
            try:
                record = orjson.loads(line)
                kind, event_id = record["r"], record["id"]
                if kind == "b":
                    calls[event_id] = _Call(int(record["key"]), float(record["at"]))
                    continue
                call = calls.get(event_id)
                if call is None:
                    continue
                if kind == "e":
                    del calls[event_id]
                elif kind == "m":
                    call.meta = record
                elif kind == "t":
                    call.sent = True
                    call.text.append(str(record["text"]))
                    for name, value in (record.get("n") or {}).items():
                        call.counts[str(name)] = int(value)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                # Only the last line can be torn (the process died writing it), and a torn
                # `t` line was never followed by the write to the client it announced.
                log.warning("skipped an unreadable journal line in %s", path.name)
    return [_event(event_id, call) for event_id, call in calls.items()]


def _estimate(text: str) -> int:
    return (len(text) + 3) // 4


def _event(event_id: str, call: _Call) -> UsageEvent:
    meta = call.meta
    if meta is None or not call.sent:
        # Its client received nothing: nothing to bill, only its reservation to free.
        return UsageEvent.release(event_id, call.key_id, call.at)
    text = "".join(call.text)
    ceiling = int(meta["ceiling"])
    counts = call.counts
    # Bedrock's own counts where they came (Anthropic's message_start gives the input), else
    # our estimates; the output never above the ceiling the call was made with.
    output = max(counts.get("output", 0), min(_estimate(text), ceiling))
    return UsageEvent(
        event_id=event_id,
        key_id=call.key_id,
        model=str(meta["model"]),
        bedrock_model_id=str(meta["bedrock_model_id"]),
        occurred_at=call.at,
        input_tokens=counts["input"] if "input" in counts else int(meta["input"]),
        output_tokens=min(output, ceiling),
        cache_read_tokens=counts.get("cache_read", 0),
        cache_write_tokens=counts.get("cache_write", 0),
        client_session_id=meta.get("session"),
        stream=bool(meta["stream"]),
        prompt=str(meta["prompt"]),
        completion=text,
        status="error",
        estimated=True,
        api=str(meta["api"]),
        user=meta.get("user"),
        prices=meta.get("prices"),
        extra={"recovered": "the translator serving this call stopped before it ended"},
    )
