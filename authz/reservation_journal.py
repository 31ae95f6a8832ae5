"""authz's journal of the reservations it holds, so that a crash forgets none of them.

A reservation lives in the replica's memory (`budget.Ledger`) from the check that admits a
call until the meter announces the call's cost committed. An authz process that dies in
between would take the money of every call still running with it, and its successor would
admit calls that money no longer covers. So each reservation is written here before the
check answers (one `write` to an append-only file: from then on it survives the process, the
bytes being in the kernel's page cache) and each release after it happens:

    {"replica": "<id>"}                           the first line of a file
    R <request id> <key id> <amount> <unix time>  a reservation (a check admitted its call)
    F <request id>                                freed (billed, released, or expired)

The process holds an exclusive `flock` on its file while it lives. A successor on the same
data directory (the restarted process, or a new one) takes over a file whose lock is free
(`adopt_dead`): the reservations without an `F` move to Postgres (`held_reservations`),
where every replica counts them until the meter records their calls. A file grown past
`COMPACT_BYTES` is rewritten with only the live reservations.

Not thread-safe by itself: `BudgetStore` serialises its calls with the ledger's own order
(writes are single syscalls; compaction takes a lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import orjson

__all__ = ["DeadJournal", "HeldReservation", "ReservationJournal", "adopt_dead"]

log = logging.getLogger("authz.journal")

COMPACT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class HeldReservation:
    request_id: str
    key_id: int
    amount: Decimal
    at: float
    """Unix time of the check that made it."""


def _reserved_line(held: HeldReservation) -> bytes:
    return f"R {held.request_id} {held.key_id} {held.amount} {held.at:.3f}\n".encode()


class ReservationJournal:
    """One live replica's journal file (`<replica id>.journal` in `directory`)."""

    def __init__(self, directory: Path, replica_id: str) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = directory / f"{replica_id}.journal"
        self.replica_id = replica_id
        self._lock = threading.Lock()
        self._live: dict[str, HeldReservation] = {}
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._size = os.write(self._fd, orjson.dumps({"replica": self.replica_id}) + b"\n")

    def reserved(self, request_id: str, key_id: int, amount: Decimal) -> None:
        """A check is about to admit a call on this reservation (call before answering)."""
        held = HeldReservation(request_id, key_id, amount, time.time())
        line = _reserved_line(held)
        with self._lock:
            self._live[request_id] = held
            self._size += os.write(self._fd, line)

    def freed(self, request_id: str) -> None:
        with self._lock:
            if self._live.pop(request_id, None) is None:
                return
            self._size += os.write(self._fd, f"F {request_id}\n".encode())
            if self._size > COMPACT_BYTES:
                self._compact()

    def _compact(self) -> None:
        """Rewrite the file with only the live reservations (atomic rename; lock kept)."""
        fresh = self.path.with_suffix(".compacting")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lines = [orjson.dumps({"replica": self.replica_id}) + b"\n"]
        lines += [
            f"R {r.request_id} {r.key_id} {r.amount} {r.at:.3f}\n".encode() for r in self._live.values()
        ]
        self._size = os.write(fd, b"".join(lines))
        os.rename(fresh, self.path)
        os.close(self._fd)  # releases the old file's lock: it is no longer named
        self._fd = fd

    @property
    def live(self) -> list[HeldReservation]:
        with self._lock:
            return list(self._live.values())

    def discard(self) -> None:
        """Remove the file (its reservations are safely elsewhere) and release the lock."""
        with self._lock:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.close(self._fd)


@dataclass(frozen=True, slots=True)
class DeadJournal:
    """A journal whose process is gone: whose replica it was, and what it still held."""

    path: Path
    replica_id: str | None
    live: list[HeldReservation]
    fd: int
    """Held locked until the reservations are moved, so only one successor adopts them."""

    def discard(self) -> None:
        """Remove the file: its reservations are in Postgres now."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)

    def release(self) -> None:
        """Keep the file for another attempt (by us or another successor)."""
        os.close(self.fd)


def adopt_dead(directory: Path, own: Path | None = None) -> list[DeadJournal]:
    """The journals in `directory` whose owners died (their lock is free), locked by us."""
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.journal")):
        if own is not None and path == own:
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # its owner is alive
        replica_id, live = _read(path)
        found.append(DeadJournal(path, replica_id, live, fd))
    return found


def _read(path: Path) -> tuple[str | None, list[HeldReservation]]:
    replica_id: str | None = None
    live: dict[str, HeldReservation] = {}
    for number, line in enumerate(path.read_bytes().splitlines()):
        try:
            if number == 0 and line.startswith(b"{"):
                replica_id = str(orjson.loads(line)["replica"])
                continue
            kind, request_id, *rest = line.decode().split(" ")
            if kind == "R":
                key_id, amount, at = rest
                live[request_id] = HeldReservation(request_id, int(key_id), Decimal(amount), float(at))
            elif kind == "F":
                live.pop(request_id, None)
        except (ValueError, KeyError, ArithmeticError, orjson.JSONDecodeError):
            # Only a write torn by the crash can be partial: its check never answered.
            log.warning("skipped an unreadable line %d of %s", number + 1, path.name)
    return replica_id, list(live.values())
