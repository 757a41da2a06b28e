"""`ncverify.evidence.workers`: a stopped pool leaves no thread or process behind.

The interpreter's exit wakes every pool's manager thread that is still running; one that closes
its wake-up pipe at that moment makes the exit print an "Exception ignored" traceback after an
interrupted `check` (seen in CI).  `stop` must therefore end the manager thread itself.
"""

from __future__ import annotations

import sys
import time

import pytest

from ncverify.evidence import workers

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork context")


def _nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_stop_ends_the_workers_and_the_manager_thread() -> None:
    with workers.pool(2) as executor:
        futures = [executor.submit(_nap, 600.0) for _ in range(4)]
        while len(executor._processes or {}) < 2:  # the workers exist
            time.sleep(0.01)
        manager = executor._executor_manager_thread
        processes = tuple(executor._processes.values())
        assert manager is not None and manager.is_alive()
        workers.stop(executor)
        assert not manager.is_alive(), "the pool's manager thread outlived stop()"
        assert not any(process.is_alive() for process in processes)
        assert all(future.done() for future in futures)
