"""The whole stack, started the way a user starts it: `brproxy up --bedrock-simulator`.

Each test module gets its own stack (its own database, data directory and ports), run as a
real `brproxy up` process tree; tests talk to it over HTTPS through Envoy with the official
SDKs. Teardown stops it with SIGINT, as Ctrl-C would, and checks that nothing is left.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from stack_process import Stack, start_stack, stop_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("brproxy"), database_url)
    try:
        yield running
    finally:
        leftovers = stop_stack(running)
        assert not leftovers, f"processes left behind: {leftovers}"
