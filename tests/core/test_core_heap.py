"""freeze_startup_heap: what exists at start-up leaves the collector's generations."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from core.heap import freeze_startup_heap


@pytest.fixture
def unfrozen_afterwards() -> Iterator[None]:
    yield
    gc.unfreeze()  # the test process goes on as before


def test_start_up_objects_are_frozen_and_later_garbage_is_still_collected(unfrozen_afterwards: None) -> None:
    survivors = [[index] for index in range(1000)]  # long-lived containers, like imported modules' state
    freeze_startup_heap()
    assert gc.get_freeze_count() >= len(survivors)

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    cycle = Cycle()
    del cycle
    # A cycle made after start-up (per request) is still found and freed by a collection.
    assert gc.collect() >= 1
