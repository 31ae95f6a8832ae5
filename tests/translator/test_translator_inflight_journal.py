"""A killed translator's calls in flight: billed for what their clients received, or released.

The journal is written by one process and recovered by another that adopts the dead one's
files (`UsageSpool.adopt_orphans`); here the dead process is a real one, killed with SIGKILL.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from core.usage import UsageEvent
from translator.inflight_journal import InflightJournal, journal_files, recover
from translator.usage_spool import UsageSpool


def call(event_id: str, **fields: object) -> UsageEvent:
    values: dict[str, object] = {
        "event_id": event_id, "key_id": 3, "model": "claude-3-haiku",
        "bedrock_model_id": "anthropic.claude-3-haiku-20240307-v1:0", "occurred_at": 1.0,
        "stream": True, "prompt": "tell me", "api": "openai.chat",
    }  # fmt: skip
    values.update(fields)
    return UsageEvent(**values)  # type: ignore[arg-type]


def test_recover_bills_what_was_sent_and_releases_the_rest(tmp_path: Path) -> None:
    journal = InflightJournal(tmp_path, "owner")
    a, b, c, d = ("00000000-0000-0000-0000-00000000000" + n for n in "abcd")
    for event_id in (a, b, c, d):
        journal.begin(event_id, 3)
    journal.model(call(a), input_estimate=40, output_ceiling=100)
    journal.sent(a, "x" * 20)  # 5 tokens by our estimate
    journal.sent(a, "y" * 20, {"input": 37, "output": 2, "cache_read": 0, "cache_write": 0})
    journal.model(call(b), input_estimate=40, output_ceiling=100)  # answered nothing yet
    journal.model(call(c), input_estimate=40, output_ceiling=6)
    journal.sent(c, "z" * 400)  # far more text than its ceiling allows
    journal.model(call(d), input_estimate=40, output_ceiling=100)
    journal.sent(d, "done")
    journal.end(d)  # its own event is in the spool: nothing to recover
    events = {e.event_id: e for e in recover(journal_files(tmp_path, "owner"))}
    assert set(events) == {a, b, c}
    assert (events[a].input_tokens, events[a].output_tokens) == (37, 10)  # Bedrock's input, our output
    assert events[a].completion == "x" * 20 + "y" * 20
    assert events[a].estimated and events[a].status == "error" and events[a].stream
    assert events[b].status == "released"
    assert events[c].output_tokens == 6  # never above the ceiling the call was made with
    assert events[c].input_tokens == 40


def test_finished_files_are_deleted_and_open_calls_kept(tmp_path: Path, monkeypatch: object) -> None:
    import translator.inflight_journal as module

    module.ROTATE_BYTES = 200  # type: ignore[attr-defined]
    try:
        journal = InflightJournal(tmp_path, "owner")
        journal.begin("long", 1)
        for i in range(20):
            journal.begin(f"short-{i}", 1)
            journal.end(f"short-{i}")
        files = journal_files(tmp_path, "owner")
        # The file with the long call stays; finished ones are gone, the current one remains.
        assert 1 <= len(files) <= 3
        assert any(b'"long"' in f.read_bytes() for f in files)
        journal.end("long")
        journal.close()
        assert journal_files(tmp_path, "owner") == []
    finally:
        module.ROTATE_BYTES = 16 * 1024 * 1024  # type: ignore[attr-defined]


DYING_TRANSLATOR = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from core.usage import UsageEvent
    from translator.inflight_journal import InflightJournal
    from translator.usage_spool import UsageSpool

    spool = UsageSpool(Path(sys.argv[1]))
    journal = InflightJournal(spool.directory, spool.owner)
    sent, finished = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
    for event_id in (sent, finished):
        journal.begin(event_id, 5)
        journal.model(
            UsageEvent(event_id, 5, "m", "b", 1.0, stream=True, api="anthropic.messages"), 10, 50
        )
        journal.sent(event_id, "hello world, here is the answer so far")
    # The finished call's own event reached the spool; the crash comes before its end line.
    spool.append(UsageEvent(finished, 5, "m", "b", 1.0, input_tokens=9, output_tokens=9))
    print("ready", flush=True)
    time.sleep(600)
    """
)


def test_a_successor_recovers_a_killed_translators_calls(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", DYING_TRANSLATOR, str(tmp_path)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stdout.close()

    successor = UsageSpool(tmp_path)
    adopted = successor.adopt_orphans()
    # The finished call's real event ships (adopted segment); its journal entry adds nothing.
    assert [(e.event_id, e.output_tokens) for s in adopted for e in s.events()] == [
        ("22222222-2222-2222-2222-222222222222", 9)
    ]
    detached = successor.detach()
    assert detached is not None
    segment, fd = detached
    UsageSpool.seal(fd)
    (recovered,) = segment.events()
    assert recovered.event_id == "11111111-1111-1111-1111-111111111111"
    assert recovered.estimated and recovered.output_tokens == 10 and recovered.input_tokens == 10
    assert recovered.api == "anthropic.messages"
    # The dead process's journal is gone: a later adoption recovers nothing twice.
    assert list(tmp_path.glob("*.inflight-*")) == []
    assert successor.adopt_orphans() == []
    successor.close()
