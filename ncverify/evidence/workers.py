"""Worker pools whose processes never outlive their parent and never answer Ctrl-C themselves.

Why: the optimiser's runs and the chunks of the batched search go to worker processes
(`ncverify.evidence.optimize.multistart`, `ncverify.evidence.batched_search`), and
`concurrent.futures.ProcessPoolExecutor` leaves them on their own in three ways.

- The parent killed outright (SIGKILL, the OOM killer, `timeout`) tells them nothing: a worker
  busy in a run computes it to the end, orphaned (two workers ran on for 35 minutes after
  `timeout` killed a `check` with 5000 classes).  So each worker asks the kernel for SIGKILL
  when its parent dies (Linux: `prctl(PR_SET_PDEATHSIG)`), and elsewhere a daemon thread polls
  the parent's pid once a second and ends the worker when it changes.
- The pool's exit waits for the runs in flight: Ctrl-C took 9 to 14 s to answer.  `pool` kills
  the workers at once when its block is left by an exception (KeyboardInterrupt included).
- Ctrl-C at a terminal sends SIGINT to the whole foreground process group: every worker would
  print a KeyboardInterrupt traceback of its own.  The workers ignore SIGINT; the parent answers
  it and stops them.
- An interrupt that lands while a worker is being forked is lost: the fork runs Python's
  at-fork callbacks (`logging` registers some), in parent and child alike, and an exception
  raised in one is printed as "Exception ignored" and dropped.  A `check` then ran on as if
  never interrupted (seen once in CI).  So the workers are forked with SIGINT and SIGTERM held
  (`held`): the parent takes a held signal once its workers exist, and each worker lets it
  through only after `initialise` has chosen what it does with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing.context
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_SECONDS = 1.0  # how often the fallback watchdog looks at the parent pid
INTERRUPTS = frozenset({signal.SIGINT, signal.SIGTERM})  # the signals the command line answers


def default_jobs(backend: str, tasks: int) -> int:
    """Worker processes for `tasks` independent tasks (runs, chunks of a batched search) on the
    backend named `backend`: the usable CPUs on numpy, else 1.

    `NCVERIFY_JOBS` overrides it (1 = serial); results do not depend on it.
    """
    env = os.environ.get("NCVERIFY_JOBS", "").strip()
    if env:
        try:
            return max(1, min(int(env), tasks))
        except ValueError:
            pass
    if backend != "numpy" or tasks < 2:
        return 1
    # no worker processes from a daemonic process (multiprocessing forbids its children, e.g.
    # inside a Dask worker) or from a thread other than the main one (fork copies only the
    # calling thread, and locks held by the others would stay locked in the child)
    if multiprocessing.current_process().daemon:
        return 1
    if threading.current_thread() is not threading.main_thread():
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, tasks))


def _context() -> multiprocessing.context.BaseContext:
    # fork starts a worker in milliseconds and shares the already imported modules; spawn is the
    # portable fallback (macOS and Windows default to it for good reasons)
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


@contextlib.contextmanager
def pool(jobs: int) -> Iterator[ProcessPoolExecutor]:
    """A `ProcessPoolExecutor` of `jobs` workers set up by `initialise`.

    Left normally, it shuts down as usual (waiting for the calls, which are all done by then);
    left by an exception (KeyboardInterrupt, or the SIGTERM exception of the command line), it
    cancels the pending calls and kills the workers without waiting for the runs in flight.
    """
    executor = ProcessPoolExecutor(
        max_workers=jobs, mp_context=_context(), initializer=initialise, initargs=(os.getpid(),)
    )
    try:
        with held(INTERRUPTS):
            # the first call starts the workers (all of them, with fork) while interrupts wait
            executor.submit(os.getpid)
        yield executor
    except BaseException:
        stop(executor)
        raise
    executor.shutdown(wait=True)


@contextlib.contextmanager
def held(signals: frozenset[signal.Signals]) -> Iterator[None]:
    """Inside the block, `signals` wait (blocked) rather than arrive; on leaving it, one that
    came meanwhile arrives, and its handler runs before the next line.

    Only the main thread runs Python's signal handlers, and only where `pthread_sigmask` exists
    (POSIX); elsewhere nothing is held.
    """
    if not hasattr(signal, "pthread_sigmask") or (
        threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def stop(executor: ProcessPoolExecutor) -> None:
    """Cancel the pending calls of `executor` and kill its worker processes now.

    `ProcessPoolExecutor` has no public way to stop a call that is running: `shutdown` cancels
    the pending ones and waits for the rest (as does the interpreter's exit, which joins the
    pool's threads and processes).  Its private `_processes` (pid -> `Process`, CPython 3.8 to
    3.14) is the only handle on the workers; where it is missing, the workers still end with
    this process (`initialise`), only later.
    """
    processes = tuple((getattr(executor, "_processes", None) or {}).values())
    # read before `shutdown`, which drops the executor's reference to its manager thread
    manager = getattr(executor, "_executor_manager_thread", None)
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, ValueError):  # already gone, or already closed
            process.kill()
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            process.join(timeout=5)  # reap them: SIGKILL takes effect at once
    # let the pool's manager thread see the dead workers and close its wake-up pipe; the
    # interpreter's exit would otherwise write to that pipe after it closed and print an
    # "Exception ignored" traceback (it did, under load, in 1 run of a few dozen)
    if manager is not None:
        manager.join(timeout=5)


def initialise(parent: int) -> None:
    """The pool's initializer, run first in each worker: leave SIGINT to the parent, take the
    default action on SIGTERM (a forked worker inherits the command line's handler, which
    would raise in it), and end when `parent` (the pid of the process that made the pool) does.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):  # forked with them held (`pool`): now let them in
        signal.pthread_sigmask(signal.SIG_UNBLOCK, INTERRUPTS)
    if not _kill_on_parent_death():
        threading.Thread(target=_watch, args=(parent,), name="parent-watchdog", daemon=True).start()
    # the parent may have died before the request above: then this process has already been
    # handed to another parent, and no signal will come
    if os.getppid() != parent:
        os._exit(1)


def _kill_on_parent_death() -> bool:
    """Ask the kernel for SIGKILL when the parent dies (Linux); False where that is not possible.

    On Linux "the parent" is the thread that forked this process: every pool is made
    from the main thread only (`default_jobs`), which lives as long as the process.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):  # no C library to load, or no prctl in it
        return False


def _watch(parent: int) -> None:
    """The portable fallback: end this process once its parent is no longer `parent`."""
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    os._exit(1)
