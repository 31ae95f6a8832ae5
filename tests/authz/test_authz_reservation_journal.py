"""Reservations outlive the authz process that made them (a real Postgres, real processes).

A replica that stops hands its reservations of calls still running to `held_reservations`; a
replica killed outright leaves its journal, and the next one on the same data directory
hands them over from there. Either way the money stays held until the meter records the
calls, and no more than that is held.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest
from authz_support import MONTH, new_key, sql

from authz.budget import Ledger
from authz.budget_store import BudgetStore
from authz.rate_limit import RateLimiter
from authz.reservation_journal import ReservationJournal, adopt_dead


def started(database_url: str, journal_dir: Path | None = None) -> BudgetStore:
    store = BudgetStore(database_url, Ledger(), RateLimiter(), journal_dir=journal_dir)
    store.start()
    deadline = time.monotonic() + 10
    while not store.ready:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return store


def held(database_url: str, key: int) -> dict[str, Decimal]:
    rows = sql(database_url, "SELECT request_id, amount FROM held_reservations WHERE key_id = $1", key)
    return {r["request_id"]: r["amount"] for r in rows}


def test_journal_lines_compaction_and_a_torn_last_line(tmp_path: Path) -> None:
    journal = ReservationJournal(tmp_path, "replica-a")
    journal.reserved("r1", 7, Decimal("0.5"))
    journal.reserved("r2", 7, Decimal("0.25"))
    journal.freed("r1")
    journal.freed("never-reserved")  # nothing written for an unknown id
    # A crash while writing leaves at most a torn last line; it was never answered.
    with open(journal.path, "ab") as f:
        f.write(b"R r3 7 0.1")
    assert [r.request_id for r in journal.live] == ["r2"]
    # Alive: its lock is held, nobody adopts it.
    assert adopt_dead(tmp_path) == []
    os.close(journal._fd)  # the process is gone
    (dead,) = adopt_dead(tmp_path)
    assert dead.replica_id == "replica-a"
    assert [(r.request_id, r.key_id, r.amount) for r in dead.live] == [("r2", 7, Decimal("0.25"))]
    dead.discard()
    assert not journal.path.exists()


def test_compaction_keeps_only_live_reservations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("authz.reservation_journal.COMPACT_BYTES", 2000)
    journal = ReservationJournal(tmp_path, "replica-b")
    for i in range(200):
        journal.reserved(f"req-{i}", 1, Decimal("0.001"))
        if i % 10:
            journal.freed(f"req-{i}")
    assert journal.path.stat().st_size < 4000
    os.close(journal._fd)
    (dead,) = adopt_dead(tmp_path)
    assert sorted(r.request_id for r in dead.live) == sorted(f"req-{i}" for i in range(0, 200, 10))
    dead.release()


def test_a_stopped_replica_hands_over_its_calls_in_flight(database_url: str, tmp_path: Path) -> None:
    key = new_key(database_url, balance="0.05")
    first = started(database_url, tmp_path)
    assert first.reserve(key, "in-flight", Decimal("0.03"), MONTH)
    first.stop()
    # Its grants are gone; the running call's reservation is held where every replica sees it.
    assert sql(database_url, "SELECT count(*) AS n FROM budget_grants WHERE key_id = $1", key)[0]["n"] == 0
    assert held(database_url, key) == {"in-flight": Decimal("0.03")}
    assert list(tmp_path.glob("*.journal")) == []
    second = started(database_url, tmp_path)
    try:
        assert not second.reserve(key, "too-much", Decimal("0.03"), MONTH)
        assert second.reserve(key, "fits", Decimal("0.02"), MONTH)
    finally:
        second.stop()


CRASHING_REPLICA = textwrap.dedent(
    """
    import sys, time
    from decimal import Decimal
    from pathlib import Path
    from authz.budget import Ledger
    from authz.budget_store import BudgetStore
    from authz.rate_limit import RateLimiter
    from core.quota import billing_month

    url, journal_dir, key = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    store = BudgetStore(url, Ledger(), RateLimiter(), journal_dir=journal_dir)
    store.start()
    while not store.ready:
        time.sleep(0.02)
    month = billing_month("UTC")
    assert store.reserve(key, "call-a", Decimal("0.02"), month)
    assert store.reserve(key, "call-b", Decimal("0.02"), month)
    print(store.replica_id, flush=True)
    time.sleep(600)
    """
)


def crash_after_reserving(database_url: str, journal_dir: Path, key: int) -> str:
    process = subprocess.Popen(
        [sys.executable, "-c", CRASHING_REPLICA, database_url, str(journal_dir), str(key)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert process.stdout is not None
    replica_id = process.stdout.readline().strip()
    assert replica_id, "the replica did not start"
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stdout.close()
    return replica_id


def test_a_killed_replicas_successor_holds_what_it_reserved(database_url: str, tmp_path: Path) -> None:
    key = new_key(database_url, balance="0.05")
    dead = crash_after_reserving(database_url, tmp_path, key)
    # One of its calls ended while no authz was listening: the meter noted the release.
    sql(database_url, "INSERT INTO released_requests (request_id) VALUES ('call-b')")
    successor = started(database_url, tmp_path)
    try:
        assert held(database_url, key) == {"call-a": Decimal("0.02")}
        replicas = sql(database_url, "SELECT replica_id FROM authz_replicas WHERE replica_id = $1", dead)
        assert replicas == []  # its grants were given back with the hand-over
        assert [p.name for p in tmp_path.glob("*.journal")] == [f"{successor.replica_id}.journal"]
        # 0.05 - 0.02 held: a call of 0.03 fits, one more cent does not.
        assert successor.reserve(key, "next", Decimal("0.03"), MONTH)
        assert not successor.reserve(key, "over", Decimal("0.01"), MONTH)
    finally:
        successor.stop()


def test_without_a_journal_a_silent_replicas_grants_stay_counted(database_url: str, tmp_path: Path) -> None:
    """A replica lost with its disk: its grants are held (for longer than any call runs)."""
    key = new_key(database_url, balance="0.05")
    crash_after_reserving(database_url, tmp_path / "lost-disk", key)
    for journal in (tmp_path / "lost-disk").glob("*.journal"):
        journal.unlink()
    sql(database_url, "UPDATE authz_replicas SET heartbeat_at = now() - interval '5 minutes'")
    other = started(database_url, tmp_path / "elsewhere")
    try:
        assert not other.reserve(key, "would-overspend", Decimal("0.05"), MONTH)
    finally:
        other.stop()
