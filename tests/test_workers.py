"""`ncverify.evidence.workers`: a stopped pool leaves no thread or process behind, and an
interrupt that comes while it forks its workers is not lost.

The interpreter's exit wakes every pool's manager thread that is still running; one that closes
its wake-up pipe at that moment makes the exit print an "Exception ignored" traceback after an
interrupted `check` (seen in CI).  `stop` must therefore end the manager thread itself.

A Ctrl-C that lands in one of Python's at-fork callbacks is printed as "Exception ignored" and
dropped: a `check` interrupted just as its workers were forked ran on (seen in CI).  The test
below sends the interrupt from inside such a callback, in the parent and in each worker, which
is the race made certain.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
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


INTERRUPTED_WHILE_FORKING = textwrap.dedent("""
    import os, signal, sys
    from ncverify.evidence import workers

    # the interrupt arrives inside the fork's callbacks, in the parent and in each worker
    interrupt = lambda: os.kill(os.getpid(), signal.SIGINT)
    os.register_at_fork(after_in_parent=interrupt, after_in_child=interrupt)
    try:
        with workers.pool(2) as executor:
            print(sum(executor.map(abs, range(-3, 0))))
    except KeyboardInterrupt:
        print("interrupted")
        sys.exit(130)
    print("ran on")
""")


def test_an_interrupt_while_the_workers_are_forked_is_answered_once_they_exist() -> None:
    run = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_WHILE_FORKING],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # the parent answers it (130, with nothing computed); no worker answers it, or prints it
    assert (run.returncode, run.stdout) == (130, "interrupted\n"), run.stderr
    assert "KeyboardInterrupt" not in run.stderr, run.stderr
