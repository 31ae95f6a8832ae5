"""The translator's durable spool of usage events (one segment file per batch).

Write path: `append` writes the event's JSON line to the open segment with one `write`
syscall before the request's answer is sent. From then on the event survives a crash of
the translator process (the bytes are in the kernel's page cache); `seal` fsyncs the
segment, after which it also survives a crash of the machine. A sealed segment is one
batch for the meter; it is deleted only after the meter answered that it committed it.

Ownership: every process has an owner id and holds an exclusive `flock` on
`<owner>.lock` while it lives. Segments are named `<owner>-<sequence>.jsonl`. A segment
whose owner's lock is free belongs to a process that died: `adopt_orphans` renames it to
the adopter's owner id (atomic) and returns it for replay. The meter deduplicates by
event id, so replaying a segment that was in fact delivered bills nothing twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from core.usage import UsageEvent
from translator.inflight_journal import journal_files, recover

__all__ = ["MAX_EVENT_BYTES", "Segment", "UsageSpool", "shippable"]

log = logging.getLogger("translator.spool")


MAX_EVENT_BYTES = 4 * 2**20
"""An event's chat-log text beyond this is cut (see `shippable`): never its figures."""


def shippable(event: UsageEvent) -> tuple[UsageEvent, bytes]:
    """The event as it can always be shipped and stored, and its JSON (the line the spool
    keeps, and sends as it is): its billing figures untouched, its chat-log text cut when it
    would make the event larger than MAX_EVENT_BYTES (a prompt of 30 MB is kept as its first
    megabyte, with a note; the whole conversation is then left out), or when it cannot be
    written at all (nested too deeply)."""
    try:
        encoded = orjson.dumps(event)  # orjson writes the dataclass
    except orjson.JSONEncodeError:
        encoded = b""
    if encoded and len(encoded) <= MAX_EVENT_BYTES:
        return event, encoded
    keep = MAX_EVENT_BYTES // 4
    note = "\n[… cut: the chat log keeps the first {} of {} characters]"
    cut = dataclasses.replace(event, whole_prompt=None)
    if len(cut.prompt) > keep:
        cut.prompt = cut.prompt[:keep] + note.format(keep, len(event.prompt))
    if len(cut.completion) > keep:
        cut.completion = cut.completion[:keep] + note.format(keep, len(event.completion))
    return cut, orjson.dumps(cut)


@dataclass
class Segment:
    """One batch of events, on disk and (unless evicted) in memory, as the JSON lines that are
    shipped as they are."""

    path: Path
    lines: list[bytes] | None = field(default_factory=list)
    count: int = 0

    def load(self) -> list[bytes]:
        """The segment's events' JSON, read back from disk if they were evicted from memory."""
        if self.lines is not None:
            return self.lines
        return [shippable(event)[1] for event in self.events()]

    def events(self) -> list[UsageEvent]:
        """The segment's events, as read back from disk (each line checked)."""
        events = []
        with open(self.path, "rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    events.append(UsageEvent.from_dict(orjson.loads(line)))
                except (orjson.JSONDecodeError, TypeError, ValueError):
                    # Only a write torn by a crash can leave a partial line, and then the
                    # request it belonged to was never answered.
                    log.warning("skipped an unreadable line %d in %s", number, self.path.name)
        return events


class UsageSpool:
    """Append-only segment files under one directory, owned by this process."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.owner = uuid.uuid4().hex[:16]
        self._lock_fd = os.open(self.directory / f"{self.owner}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._sequence = 0
        self._active: Segment | None = None
        self._active_fd: int | None = None

    def append(self, event: UsageEvent) -> None:
        """Write one event to the active segment (one write syscall; no fsync here), as it
        will be shipped (`shippable`)."""
        if self._active is None:
            self._sequence += 1
            path = self.directory / f"{self.owner}-{self._sequence:012d}.jsonl"
            self._active_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._active = Segment(path)
        assert self._active_fd is not None and self._active.lines is not None
        _, line = shippable(event)
        os.write(self._active_fd, line + b"\n")
        self._active.lines.append(line)
        self._active.count += 1

    @property
    def active_count(self) -> int:
        return self._active.count if self._active is not None else 0

    def detach(self) -> tuple[Segment, int] | None:
        """End the active segment: later events go to a new one. Call `seal` on the result."""
        segment, fd = self._active, self._active_fd
        if segment is None or fd is None:
            return None
        self._active, self._active_fd = None, None
        return segment, fd

    @staticmethod
    def seal(fd: int) -> None:
        """fsync and close a detached segment (blocking: run it off the event loop)."""
        try:
            os.fsync(fd)  # from here the batch survives a power cut, not only a crash
        finally:
            os.close(fd)

    @staticmethod
    def delete(segment: Segment) -> None:
        """Forget a batch the meter has committed."""
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()

    def adopt_orphans(self) -> list[Segment]:
        """Segments of processes that died, renamed to this owner, oldest first.

        The calls a dead process had in flight (its `inflight_journal.py` files) become usage
        events in this owner's active segment (shipped after the adopted ones), written
        before the dead journal is deleted: a crash in between only recovers them again, and
        the meter bills an event id once.
        """
        adopted: list[Segment] = []
        for lock in sorted(self.directory.glob("*.lock")):
            owner = lock.stem
            if owner == self.owner:
                continue
            fd = os.open(lock, os.O_WRONLY)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its owner is alive
                shipped: set[str] = set()
                for path in sorted(self.directory.glob(f"{owner}-*.jsonl")):
                    self._sequence += 1
                    target = self.directory / f"{self.owner}-{self._sequence:012d}.jsonl"
                    os.rename(path, target)  # atomic: one owner at a time
                    segment = Segment(target, lines=None)
                    events = segment.events()
                    segment.lines = [shippable(event)[1] for event in events]
                    segment.count = len(events)
                    shipped.update(event.event_id for event in events)
                    adopted.append(segment)
                journal = journal_files(self.directory, owner)
                recovered = [e for e in recover(journal) if e.event_id not in shipped]
                for event in recovered:
                    self.append(event)
                if recovered:
                    billed = sum(1 for e in recovered if e.status != "released")
                    log.warning(
                        "a translator stopped with %d calls in flight: %d billed for what their "
                        "clients received, %d released",
                        len(recovered), billed, len(recovered) - billed,
                    )  # fmt: skip
                for path in journal:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
            finally:
                os.close(fd)
        return adopted

    def close(self) -> None:
        """Seal what is open and release ownership (unshipped segments stay for a successor)."""
        detached = self.detach()
        if detached is not None:
            self.seal(detached[1])
        os.close(self._lock_fd)
