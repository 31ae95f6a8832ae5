"""The translator's durable spool: segments, sealing, and adoption of a dead process's batches."""

from __future__ import annotations

import time
from pathlib import Path

from core.usage import UsageEvent, new_event_id
from translator.usage_spool import UsageSpool


def event(key_id: int = 1) -> UsageEvent:
    return UsageEvent(new_event_id(), key_id, "claude-3-haiku", "anthropic.x", time.time(), input_tokens=3)


def test_events_are_written_before_any_seal(tmp_path: Path) -> None:
    spool = UsageSpool(tmp_path)
    first = event()
    spool.append(first)
    segment_files = list(tmp_path.glob("*.jsonl"))
    assert len(segment_files) == 1
    # On disk already (one write syscall): a crash from here on loses nothing.
    assert first.event_id in segment_files[0].read_text()
    assert spool.active_count == 1
    detached = spool.detach()
    assert detached is not None
    segment, fd = detached
    UsageSpool.seal(fd)
    assert spool.active_count == 0
    assert [e.event_id for e in segment.events()] == [first.event_id]
    spool.append(event())  # a new segment starts
    assert len(list(tmp_path.glob("*.jsonl"))) == 2
    spool.delete(segment)
    assert len(list(tmp_path.glob("*.jsonl"))) == 1
    spool.close()


def test_a_live_owner_keeps_its_segments(tmp_path: Path) -> None:
    alive = UsageSpool(tmp_path)
    alive.append(event())
    other = UsageSpool(tmp_path)
    assert other.adopt_orphans() == []
    alive.close()
    other.close()


def test_segments_of_a_dead_owner_are_adopted_once(tmp_path: Path) -> None:
    dead = UsageSpool(tmp_path)
    events = [event(i) for i in range(1, 4)]
    for e in events:
        dead.append(e)
    dead.close()  # releases its lock, as a dying process would
    heir = UsageSpool(tmp_path)
    adopted = heir.adopt_orphans()
    assert [e.event_id for s in adopted for e in s.events()] == [e.event_id for e in events]
    assert all(s.path.name.startswith(heir.owner) for s in adopted)
    assert heir.adopt_orphans() == []  # nobody adopts them twice
    assert not list(tmp_path.glob(f"{dead.owner}*"))
    heir.close()


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    dead = UsageSpool(tmp_path)
    kept = event()
    dead.append(kept)
    dead.close()
    segment = next(tmp_path.glob("*.jsonl"))
    with segment.open("ab") as f:
        f.write(b'{"event_id": "half-writt')
    heir = UsageSpool(tmp_path)
    adopted = heir.adopt_orphans()
    assert [e.event_id for s in adopted for e in s.events()] == [kept.event_id]
    heir.close()
