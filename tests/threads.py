"""Helpers for tests that run code on several threads at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition did not become true in time")
        time.sleep(0.001)


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run ``target(i)`` for ``i`` in ``range(count)``, each on its own
    thread, and fail unless all of them finish within 30 seconds."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()
