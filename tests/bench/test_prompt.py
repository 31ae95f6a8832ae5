"""`--prompt-kb`: every side's request grows by the padding, and nothing else about it changes.

The simulator's answer echoes the last user text and obeys its directives: the padding must
change neither, or the answer check and the load generator's success test would compare
something else than with the short prompt. Asked of the real simulator, over HTTP.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from run import chat_body, free_port, history, padding_text, prompt, simulator_request
from simulator_client import StandaloneSimulator, converse_body, simulator_answer, start_standalone_simulator


@pytest.fixture(scope="module")
def simulator() -> Iterator[StandaloneSimulator]:
    running = start_standalone_simulator(free_port(), latency_ms=0, tokens_per_second=0)
    yield running
    running.stop()


@pytest.mark.parametrize("kib", [1, 50, 200])
def test_the_padding_is_exactly_the_size_asked_of_plain_ascii_code_and_prose(kib: int) -> None:
    text = padding_text(kib)
    assert len(text.encode()) == len(text) == kib * 1024
    assert "[[sim:" not in text and "Simulated" not in text
    lines = text.splitlines()
    assert len(lines) > kib * 10  # many lines, not one long string
    assert lines[0] == "     1\tfrom __future__ import annotations"
    assert 'currency: str = "EUR"' in text  # quotes for JSON to escape, as real code has


def test_no_padding_is_todays_request() -> None:
    assert padding_text(0) == ""
    assert history("") == ()
    assert chat_body(False, 16) == {
        "model": "claude-3-haiku",
        "messages": [{"role": "user", "content": "Benchmark prompt, please answer. [[sim:tokens=16]]"}],
        "max_tokens": 256,
    }


def test_the_padding_is_an_earlier_turn_and_the_last_user_message_is_the_short_prompt() -> None:
    padding = padding_text(200)
    body = chat_body(True, 16, 40, padding)
    assert body["messages"] == [
        {"role": "user", "content": padding},
        {"role": "assistant", "content": "I have read the file and its notes."},
        {"role": "user", "content": prompt(16, 40)},
    ]
    size = len(json.dumps(body).encode())
    # A 200 KiB request as asked (JSON escapes each newline, tab and quote: a few % more).
    assert 200 * 1024 < size < 215 * 1024
    # The simulator alone is sent the same conversation.
    converse = json.loads(simulator_request("http://127.0.0.1:1", False, 40, 16, padding).body)
    assert [(m["role"], m["content"][0]["text"]) for m in converse["messages"]] == [
        ("user", padding),
        ("assistant", "I have read the file and its notes."),
        ("user", prompt(16, 40)),
    ]


def test_the_simulator_answers_a_padded_prompt_exactly_as_the_short_one(
    simulator: StandaloneSimulator,
) -> None:
    short = simulator_answer(simulator.url, prompt(16))
    padded = simulator_answer(simulator.url, prompt(16), history(padding_text(200)))
    assert padded == short
    assert short.startswith("Simulated answer to: Benchmark prompt, please answer.")
    assert len(short.split()) == 16  # the directive's tokens=16 is still obeyed


def test_padding_after_the_directive_in_the_same_message_would_change_the_answer(
    simulator: StandaloneSimulator,
) -> None:
    """Why the padding is an earlier turn: the echo is the last user text's first 40 characters,
    directives taken out, and the prompt's own text is shorter than that."""
    short = simulator_answer(simulator.url, prompt(16))
    inline = simulator_answer(simulator.url, prompt(16) + "\n" + padding_text(1))
    assert inline != short


def test_the_padded_converse_body_is_the_short_one_with_two_turns_before() -> None:
    short = json.loads(converse_body(prompt(16)))
    padded = json.loads(converse_body(prompt(16), history=history(padding_text(1))))
    assert padded["messages"][-1] == short["messages"][0]
    assert padded["inferenceConfig"] == short["inferenceConfig"]
