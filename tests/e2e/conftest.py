"""The whole stack, started the way a user starts it: `brproxy up --bedrock-simulator`.

Each test module gets its own stack (its own database, data directory and ports), run as a
real `brproxy up` process tree; tests talk to it over HTTPS through Envoy with the official
SDKs. Teardown stops it with SIGINT, as Ctrl-C would, and checks that nothing is left.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from stack_process import STARTED, Stack, start_stack, stop_stack

OUTPUT_LINES_ON_FAILURE = 60


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report ends with the last lines each stack it used printed.

    An SDK's exception says what the client got (a 403, a 502); why is in the services' own
    log lines, which are otherwise lost with the stack. "Used": started during the test, or
    still running (a module's shared stack).
    """
    report: pytest.TestReport = yield
    if report.failed:
        first = item.stash.get(_FIRST_STACK, len(STARTED))
        for index, stack in enumerate(STARTED):
            if index >= first or stack.process.poll() is None:
                tail = "".join(stack.output[-OUTPUT_LINES_ON_FAILURE:])
                report.sections.append((f"brproxy up output ({stack.base_url})", tail))
    return report


_FIRST_STACK = pytest.StashKey[int]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_FIRST_STACK] = len(STARTED)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("brproxy"), database_url)
    try:
        yield running
    finally:
        leftovers = stop_stack(running)
        assert not leftovers, f"processes left behind: {leftovers}"
